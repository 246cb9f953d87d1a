"""World-model training (`vjepa-world train-wm`), in one of three `model.encoder_training` modes.

1. Encoder: the one given, or else the default CPU-sized encoder pretrained here with the V-JEPA
   objective on the dataset's own videos (`OUT/encoder/`, resumed if interrupted); in "joint" mode
   a fresh one of the same architecture.
2. Inputs, each decoded or encoded once and reused by every epoch and by reruns: "frozen" caches
   every frame's layer-normed tokens (`OUT/features/`); the trained modes cache the decoded
   frames (`OUT/frames/`) and encode them in every step, with gradients.
3. Loss: teacher-forcing error (true latents as context) plus rollout error (predictions fed back,
   `loss.rollout_steps` steps); the trained modes add the anti-collapse term on the latents of
   each time step over the batch (SIGReg by default). AdamW with warmup-stable-decay. The data
   order is a function of (seed, step), so a run killed and resumed from `checkpoint.pt` has the
   losses of an uninterrupted one.

The last episodes (`data.val_fraction`) are held out: at the end, the rollout error per horizon
on them, against copying the last latents and against the same model fed shuffled actions, goes
into `summary.json`, with a warning when the actions barely matter. The run folder then loads
with `WorldModel.from_pretrained(OUT)`, which carries the frame skip, history and latent kind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..checkpoints import atomic_torch_save, atomic_write, read_checkpoint_file
from ..data.datasets import EpochSampler
from ..data.episodes import STATE_KEY, FeatureCache, LeRobotDataset, SequenceDataset, encode_episodes
from ..eval.world_model import rollout_errors
from ..nn import VideoEncoder
from ..nn.heads import (
    ContinueHead,
    ContinueHeadConfig,
    RewardHead,
    RewardHeadConfig,
    StateHead,
    StateHeadConfig,
)
from ..nn.projector import LatentProjector, ProjectorConfig
from ..nn.regularizers import REGULARIZERS
from ..viz import plot_training_curves
from ..world_model import ENCODER_TRAINING, WorldModel
from . import distributed
from .config import WorldModelConfig
from .goal_distance import fit_distance_head
from .logs import MetricsLog
from .pretrain import check_run, param_groups
from .schedules import set_learning_rate
from .uncertainty import fit_uncertainty
from .wm_encoder import encoder_architecture, encoder_fingerprint, encoder_side, frame_shape, pretrain_encoder
from .wm_objective import WorldModelObjective

log = logging.getLogger(__name__)


def split_episodes(dataset_dir: Path, val_fraction: float) -> tuple[list[int], list[int]]:
    """(train, val) episode indices: the last `val_fraction` of the episodes (at least one) held out."""
    episodes = LeRobotDataset(dataset_dir, state_key=None).episode_indices
    held_out = min(max(round(val_fraction * len(episodes)), 1 if val_fraction > 0 else 0), len(episodes) - 1)
    return episodes[: len(episodes) - held_out], episodes[len(episodes) - held_out :]


FRAME_CACHE_KEY = "frames"  # the frame cache: decoded uint8 frames (T, H*W, 3) in the feature-cache format


def _flat_frames(frames: Tensor) -> Tensor:
    """uint8 frames `(B, H, W, 3)` -> `(B, H*W, 3)`: what the frame cache stores."""
    return frames.flatten(1, 2)


def _batch(
    dataset: SequenceDataset,
    keys: list[int],
    device: torch.device,
    use_states: bool,
    frame: tuple[int, int] | None,
) -> dict[str, Tensor | None]:
    """Stack windows `keys` (sampler keys, taken modulo the dataset size) on `device`: cached latents
    `(B, T, N, D)`, or with `frame` = (H, W) the cached frames `(B, T, H, W, 3)` (and, when the
    dataset reads them, the frames one row earlier: `previous`)."""
    items = [dataset[key % len(dataset)] for key in keys]
    stack = lambda key: torch.stack([item[key] for item in items]).to(device)
    frames = lambda key: stack(key) if frame is None else stack(key).unflatten(2, frame)
    return {
        "inputs": frames("features"),  # (B, T, N, D), or frames (B, T, H, W, 3) uint8
        "previous": frames("previous_features") if dataset.previous else None,
        "actions": stack("actions"),  # (B, T, A)
        "states": stack("states") if use_states else None,
        "rewards": stack("rewards"),  # (B, T) summed over the frame skip
        "dones": stack("dones"),  # (B, T)
    }


def _state_sample(windows: SequenceDataset, episodes: int = 64) -> Tensor:
    """The raw states `(n, S)` of up to `episodes` training episodes: the state head's statistics."""
    rows = [windows.meta.read_rows(int(e))["states"] for e in windows.episodes[:episodes]]
    return torch.from_numpy(np.concatenate(rows)).float()


def _trained_modules(world_model: WorldModel) -> list[nn.Module]:
    """What the optimiser updates (and a checkpoint holds): the predictor, plus the encoder and the
    projector when they are trained."""
    modules = [world_model.predictor]
    if world_model.encoder_training != "frozen":
        modules += [world_model.encoder, world_model.projector]
    heads = (world_model.state_head, world_model.reward_head, world_model.continue_head)
    return modules + [head for head in heads if head is not None]


def _save_state(path: Path, world_model: WorldModel, optimizer, step: int, config: WorldModelConfig):
    state = {
        "modules": [module.state_dict() for module in _trained_modules(world_model)],
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": json.dumps(config.to_dict()),
    }
    atomic_torch_save(state, path)


def check_config(config: WorldModelConfig) -> None:
    """One-line errors for settings that contradict the training mode (nothing is silently ignored)."""
    mode, loss = config.model.encoder_training, config.loss
    if mode not in ENCODER_TRAINING:
        raise ValueError(f"model.encoder_training must be one of {', '.join(ENCODER_TRAINING)}, got {mode!r}")
    if loss.distance not in (None, "l1", "mse"):
        raise ValueError(f"loss.distance must be l1 or mse, got {loss.distance!r}")
    if config.model.observation_frames not in (None, 1, 2):
        raise ValueError(
            f"model.observation_frames must be 1 or 2 (or unset), got {config.model.observation_frames!r}"
        )
    if config.uncertainty.kind not in ("categorical", "gaussian", "none"):
        raise ValueError(
            f"uncertainty.kind must be categorical, gaussian or none, got {config.uncertainty.kind!r}"
        )
    if loss.regularizer not in REGULARIZERS:
        raise ValueError(
            f"loss.regularizer must be one of {', '.join(REGULARIZERS)}, got {loss.regularizer!r}"
        )
    defaults = WorldModelConfig()
    if mode == "frozen":
        if loss.regularizer_weight is not None:
            raise ValueError(
                "loss.regularizer_weight acts on trained encoders only (a frozen encoder's latents cannot "
                "collapse): set model.encoder_training=finetune or joint, or drop it"
            )
        if config.model.latent_dim != defaults.model.latent_dim:
            raise ValueError(
                "model.latent_dim sizes the projector of trained encoders; a frozen one plans on its tokens"
            )
    if mode == "joint":
        changed = [
            k
            for k in ("steps", "batch_size", "lr")
            if getattr(config.encoder, k) != getattr(defaults.encoder, k)
        ]
        if changed:
            raise ValueError(
                f"encoder.{changed[0]} sets V-JEPA pretraining, which joint training skips (it trains the "
                "encoder from scratch with optim.*): drop it or use model.encoder_training=finetune"
            )


def build_world_model(
    config: WorldModelConfig, encoder: VideoEncoder, action_dim: int, state_dim: int
) -> WorldModel:
    """A fresh world model for this encoder in the configured mode (projector, state head and
    predictor at init); frames are resized to the encoder's image size."""
    mode = config.model.encoder_training
    tokens = (encoder.config.image_size // encoder.config.patch_size) ** 2
    projector = state_head = None
    if mode != "frozen":
        projector = LatentProjector(
            ProjectorConfig(tokens=tokens, encoder_dim=encoder.config.dim, latent_dim=config.model.latent_dim)
        )
    latent_tokens, latent_dim = (
        (tokens, encoder.config.dim) if projector is None else (1, config.model.latent_dim)
    )
    if state_dim and config.loss.state_decoding:
        state_head = StateHead(
            StateHeadConfig(tokens=latent_tokens, latent_dim=latent_dim, state_dim=state_dim)
        )
    shape = {"tokens": latent_tokens, "latent_dim": latent_dim}
    reward_head = RewardHead(RewardHeadConfig(**shape)) if config.loss.reward else None
    continue_head = ContinueHead(ContinueHeadConfig(**shape)) if config.loss.continuation else None
    widths = {k: v for k in ("dim", "depth", "num_heads") if (v := getattr(config.model, k)) is not None}
    return WorldModel(
        encoder,
        projector=projector,
        state_head=state_head,
        reward_head=reward_head,
        continue_head=continue_head,
        encoder_training=mode,
        observation_frames=config.model.observation_frames or 1,
        frame_skip=config.data.frame_skip,
        history=config.loss.rollout_context,
        action_dim=action_dim,
        state_dim=state_dim,
        preset=config.model.preset,
        **widths,
    )


def action_blind_warning(val: dict, margin: float = 0.03) -> str | None:
    """A one-line warning when the held-out error with shuffled actions is within `margin` of the
    true actions' at every horizon: the model then plans on momentum, not on its actions."""
    l1 = val.get("l1", {})
    true, shuffled = l1.get("world model"), l1.get("shuffled actions")
    if not true or not shuffled:
        return None
    gaps = [s / t - 1 for t, s in zip(true, shuffled, strict=True) if t > 0]
    if gaps and max(gaps) < margin:
        return (
            f"the world model barely uses its actions: shuffled actions raise its held-out error by at most "
            f"{100 * max(gaps):.1f}%; try data with more motion (collect --policy hold), a longer "
            "data.frame_skip, or model.encoder_training=joint"
        )
    return None


def train_world_model(
    config: WorldModelConfig,
    data: str | Path,
    out: str | Path,
    *,
    encoder: VideoEncoder | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train a WorldModel on the LeRobot dataset `data`, writing into `out` (see the module docstring).
    `stop_after` ends the run early after that many steps (as a kill would, but cleanly)."""
    check_config(config)
    optim, run, settings, mode = config.optim, config.run, config.data, config.model.encoder_training
    data, out = Path(data), Path(out)
    checkpoint = check_run(out, resume, run.precision)
    if run.fsdp:
        raise ValueError(
            "train-wm runs DDP only (the predictor, even the released 300 M one, fits on a device; the "
            "encoder is small or frozen): drop run.fsdp"
        )
    needed = config.loss.rollout_context + 1 + config.loss.rollout_steps if config.loss.rollout else 2
    if settings.sequence_length < needed:
        raise ValueError(
            f"data.sequence_length {settings.sequence_length} is too short: the rollout loss needs "
            f"loss.rollout_context + 1 + loss.rollout_steps = {needed} frames"
        )
    has_states = STATE_KEY in LeRobotDataset(data, state_key=None).features
    if config.model.use_states and not has_states:
        raise ValueError(
            f"{data} has no {STATE_KEY!r} feature for the state token: train without one "
            "(--set model.use_states=false, or leave it unset)"
        )
    if config.model.use_states is None:  # resolved once, so every later use reads a bool
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, use_states=has_states))
    state_key = STATE_KEY if config.model.use_states else None
    if mode == "joint" and encoder is not None:
        raise ValueError("joint training starts the encoder from scratch: drop --encoder, or use finetune")
    meta = LeRobotDataset(data, state_key=None)
    frame = frame_shape(meta)  # (H, W)
    train_episodes, val_episodes = split_episodes(data, settings.val_fraction)
    if encoder is None and mode == "joint":
        torch.manual_seed(run.seed)
        side = encoder_side(frame, config.encoder.patch_size)
        encoder = VideoEncoder(encoder_architecture(config.encoder, side).model_configs()[0])
    elif encoder is None:
        encoder = pretrain_encoder(data, out / "encoder", config.encoder, run.seed, progress)
    process = distributed.setup(run.device)  # after pretraining, which leaves the process group
    per_rank, remainder = divmod(optim.batch_size, process.world_size)
    if remainder or per_rank == 0:
        raise ValueError(
            f"optim.batch_size {optim.batch_size} must be a multiple of the {process.world_size} processes"
        )

    encoder = encoder.to(process.device)
    frames = config.model.observation_frames or (1 if mode == "frozen" else encoder.config.tubelet_size)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, observation_frames=frames))
    pairs = mode == "frozen" and frames == 2  # tokens of (previous, current) tubelets, cached
    if mode == "frozen":  # every frame's tokens, encoded once (only encode() of this model is used)
        cache_dir, key = out / "features", encoder_fingerprint(encoder) + ("-pairs" if pairs else "")
        encode_fn = WorldModel(encoder, action_dim=1, observation_frames=frames).encode
    else:  # every frame decoded once; the encoder sees them in every step
        cache_dir, key, encode_fn = out / "frames", f"{FRAME_CACHE_KEY}-{frame[0]}x{frame[1]}", _flat_frames
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
        encode_episodes(
            data,
            encode_fn,
            cache_dir,
            key=key,
            batch_size=settings.encode_batch,
            pairs=pairs,
            progress=progress,
        )
    distributed.barrier(process)
    inputs = FeatureCache(cache_dir, key)  # complete now: the main process wrote it

    # decoded frames are small (12 KB at 64 px): keep every training episode in memory; cached tokens
    # of a large encoder are not (the SequenceDataset default keeps the last 256 episodes read)
    kept = {} if mode == "frozen" else {"keep_episodes": len(train_episodes), "previous": frames == 2}
    window = dict(frame_skip=settings.frame_skip, state_key=state_key, **kept)
    train_set = SequenceDataset(
        data, settings.sequence_length, episodes=train_episodes, features=inputs, **window
    )
    first = train_set[0]

    torch.manual_seed(run.seed)
    state_dim = first["states"].shape[-1] if config.model.use_states else 0
    world_model = build_world_model(config, encoder, first["actions"].shape[-1], state_dim)
    if world_model.state_head is not None:
        world_model.state_head.set_statistics(_state_sample(train_set))
    trained = _trained_modules(world_model)
    step, state = 0, None
    if resume and checkpoint.exists():
        state = read_checkpoint_file(checkpoint)
        for module, weights in zip(trained, state["modules"], strict=True):
            module.load_state_dict(weights)
        step = state["step"]
        log.info("resuming %s at step %d", out, step)
    world_model.to(process.device)
    world_model.predictor.gradient_checkpointing = run.activation_checkpointing
    objective = WorldModelObjective(world_model, config.loss)
    net = distributed.wrap(objective, trained, process, run.fsdp)
    optimizer = torch.optim.AdamW(param_groups(trained, optim.weight_decay), betas=optim.betas, eps=optim.eps)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    sampler = EpochSampler(
        len(train_set), run.seed, process.rank, process.world_size, start=step * per_rank, batch_size=per_rank
    )
    keys = iter(sampler)
    autocast = distributed.autocast(process, run.precision)
    metrics_log = MetricsLog(out, enabled=process.is_main, start_step=step)
    end = optim.steps if stop_after is None else min(optim.steps, stop_after)
    bar = tqdm(total=optim.steps, initial=step, desc=f"train-wm ({mode})", unit="step", disable=not progress)
    bar.disable = bar.disable or not process.is_main
    started = time.perf_counter()
    values: dict[str, float] = {}
    pixels = None if mode == "frozen" else frame
    world_model.train()
    while step < end:
        tick = time.perf_counter()
        lr = set_learning_rate(optimizer, optim, step)
        batch_keys = [next(keys) for _ in range(per_rank)]
        batch = _batch(train_set, batch_keys, process.device, config.model.use_states, pixels)
        with autocast:
            loss, metrics = net(**batch, step=step)
        loss.backward()
        if optim.grad_clip:
            parameters = [p for module in trained for p in module.parameters() if p.requires_grad]
            metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(parameters, optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        values = distributed.mean({k: float(v) for k, v in metrics.items()}, process)
        values["lr"] = lr
        values["windows_per_second"] = optim.batch_size / (time.perf_counter() - tick)
        if step % run.log_every == 0 or step == end:
            metrics_log.write(step, values)
        bar.set_postfix(loss=f"{values['loss']:.4f}", copy=f"{values['copy_last']:.4f}")
        bar.update()
        if process.is_main and (step % run.checkpoint_every == 0 or step == end):
            _save_state(checkpoint, world_model, optimizer, step, config)
        distributed.barrier(process)
    bar.close()
    metrics_log.close()
    summary = {
        "steps": step,
        "finished": step >= optim.steps,
        "final_loss": values.get("loss"),
        "encoder_training": mode,
        "latent": world_model.latent,
        "train_episodes": len(train_episodes),
        "val_episodes": len(val_episodes),
        "action_dim": world_model.action_dim,
        "frame_skip": world_model.frame_skip,
        "history": world_model.history,
        "seconds": round(time.perf_counter() - started, 2),
        "data": str(data.resolve()),  # what train-agent replays start states from
        "processes": process.world_size,
    }
    if summary["finished"] and process.is_main:
        world_model.eval()
        latents = _trained_latents(world_model, config, data, out, progress)
        if val_episodes:
            summary["val"] = _held_out_errors(world_model, config, data, latents, val_episodes, window)
            warning = action_blind_warning(summary["val"])
            if warning:
                log.warning(warning)
                summary["warning"] = warning
        if config.distance.steps:
            episodes = [latents.read(e, slice(None)) for e in train_episodes]  # (T_e, N, D) each
            goals = None
            if world_model.observation_frames == 2:  # goal images are at rest: their latents too
                still = _trained_latents(world_model, config, data, out, progress, pairs=False)
                goals = [still.read(e, slice(None)) for e in train_episodes]
            world_model.distance_head = fit_distance_head(
                episodes, config.distance, goals, run.seed, progress
            )
        if config.uncertainty.steps and (config.uncertainty.kind != "none" or config.uncertainty.ensemble):
            shape = window | {"sequence_length": settings.sequence_length}
            world_model.stochastic, world_model.ensemble = fit_uncertainty(
                world_model, data, latents, train_episodes, config.uncertainty, shape, run.seed, progress
            )
        world_model.save_pretrained(out)
        plot_training_curves(out, out / "training_curves.png")
        atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    distributed.teardown()
    return summary


def encode_dataset(
    world_model: WorldModel,
    data: Path,
    cache_dir: Path,
    *,
    pairs: bool | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> FeatureCache:
    """Every frame's latents under `world_model`, encoded once into `cache_dir` (keyed by the
    encoder's and projector's weights); a two-frame model sees each frame with the one before it,
    as in training and acting, unless `pairs` is False (each frame at rest)."""
    pairs = world_model.observation_frames == 2 if pairs is None else pairs
    key = encoder_fingerprint(world_model.encoder, world_model.projector) + ("-pairs" if pairs else "")
    return encode_episodes(
        data, world_model.encode, cache_dir, key=key, batch_size=batch_size, pairs=pairs, progress=progress
    )


def _trained_latents(
    world_model: WorldModel,
    config: WorldModelConfig,
    data: Path,
    out: Path,
    progress: bool,
    pairs: bool | None = None,
) -> FeatureCache:
    """Every frame's latents under the finished model, encoded once into `OUT/features` (a frozen
    encoder's were cached before training): with motion (the frame and the one before) for a
    two-frame model unless `pairs` is False (each frame at rest, as goal images are encoded)."""
    pairs = world_model.observation_frames == 2 if pairs is None else pairs
    if world_model.encoder_training == "frozen" and pairs == (world_model.observation_frames == 2):
        key = encoder_fingerprint(world_model.encoder, world_model.projector) + ("-pairs" if pairs else "")
        return FeatureCache(out / "features", key)
    return encode_dataset(
        world_model,
        data,
        out / "features",
        pairs=pairs,
        batch_size=config.data.encode_batch,
        progress=progress,
    )


def _held_out_errors(
    world_model: WorldModel,
    config: WorldModelConfig,
    data: Path,
    features: FeatureCache,
    episodes: list[int],
    window: dict,
) -> dict:
    """Rollout errors on the held-out episodes' latents."""
    context, horizon = config.loss.rollout_context, config.data.eval_horizon
    window = window | {"features": features, "keep_episodes": len(episodes)}
    val_set = SequenceDataset(data, context + 1 + horizon, episodes=episodes, **window)
    return rollout_errors(world_model, val_set, horizon, context=context, use_states=config.model.use_states)
