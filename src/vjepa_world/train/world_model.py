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
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoints import encoder_fingerprint
from ..data.episodes import STATE_KEY, FeatureCache, LeRobotDataset, SequenceDataset, encode_episodes
from ..horizon_errors import rollout_errors
from ..nn import VideoEncoder
from ..nn.decoder import FrameDecoder, FrameDecoderConfig
from ..nn.heads import (
    ContinueHead,
    ContinueHeadConfig,
    InverseDynamicsConfig,
    InverseDynamicsHead,
    RewardHead,
    RewardHeadConfig,
    StateHead,
    StateHeadConfig,
)
from ..nn.projector import LatentProjector, ProjectorConfig
from ..nn.regularizers import REGULARIZERS
from ..world_model import ENCODER_TRAINING, WorldModel
from . import distributed
from .config import WorldModelConfig, refuse_inert_keys
from .goal_distance import default_steps as default_distance_steps
from .goal_distance import fit_distance_head
from .loop import TrainingLoop
from .uncertainty import fit_uncertainty
from .wm_encoder import encoder_architecture, encoder_side, frame_shape, pretrain_encoder
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
    heads = ("state_head", "inverse_head", "frame_decoder", "reward_head", "continue_head")
    return modules + [getattr(world_model, h) for h in heads if getattr(world_model, h) is not None]


def check_config(config: WorldModelConfig, encoder_given: bool = False) -> None:
    """One-line errors for settings that would not act in this run (nothing is silently ignored) and
    for unknown choices."""
    mode, loss = config.model.encoder_training, config.loss
    refuse_inert_keys(config, encoder_given=encoder_given)
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


def build_world_model(
    config: WorldModelConfig, encoder: VideoEncoder, action_dim: int, state_dim: int
) -> WorldModel:
    """A fresh world model for this encoder in the configured mode (projector, state head and
    predictor at init); frames are resized to the encoder's image size."""
    mode = config.model.encoder_training
    tokens = (encoder.config.image_size // encoder.config.patch_size) ** 2
    projector = state_head = inverse_head = frame_decoder = None
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
    if mode != "frozen" and config.loss.inverse_dynamics:
        inverse_head = InverseDynamicsHead(InverseDynamicsConfig(**shape, action_dim=action_dim))
    if mode != "frozen" and config.loss.frame_decoding:
        frame_decoder = FrameDecoder(FrameDecoderConfig(**shape))
    reward_head = RewardHead(RewardHeadConfig(**shape)) if config.loss.reward else None
    continue_head = ContinueHead(ContinueHeadConfig(**shape)) if config.loss.continuation else None
    widths = {k: v for k in ("dim", "depth", "num_heads") if (v := getattr(config.model, k)) is not None}
    return WorldModel(
        encoder,
        projector=projector,
        state_head=state_head,
        inverse_head=inverse_head,
        frame_decoder=frame_decoder,
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
            f"{100 * max(gaps):.1f}%; try data with more motion (collect --policy ou-noise), a longer "
            "data.frame_skip, or model.encoder_training=joint"
        )
    return None


def _resolved_for_data(config: WorldModelConfig, data: Path, encoder_given: bool) -> WorldModelConfig:
    """The defaults that depend on the data, filled in once so that every later use (and the saved
    config) reads a value: `model.use_states` (whether `data` has states), `optim.steps`: 1,000,
    or 4,000 for an encoder trained without states, whose latent only SIGReg's spread keeps from
    dropping what the dynamics do not ask for, and that takes longer (docs/results.md, issue 13),
    and `distance.steps`, which grow with the frames (`goal_distance.default_steps`)."""
    meta = LeRobotDataset(data, state_key=None)
    has_states = STATE_KEY in meta.features
    if config.model.use_states and not has_states:
        raise ValueError(
            f"{data} has no {STATE_KEY!r} feature for the state token: train without one "
            "(--set model.use_states=false, or leave it unset)"
        )
    model, optim, distance = config.model, config.optim, config.distance
    if distance.steps is None:
        distance = dataclasses.replace(distance, steps=default_distance_steps(sum(meta.lengths.values())))
    if model.use_states is None:
        model = dataclasses.replace(model, use_states=has_states)
    if optim.steps is None:
        frame_only = model.encoder_training != "frozen" and not model.use_states
        optim = dataclasses.replace(optim, steps=4000 if frame_only else 1000)
    config = dataclasses.replace(config, model=model, optim=optim, distance=distance)
    check_config(config, encoder_given=encoder_given)  # again, now that every value is known
    return config


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
    check_config(config, encoder_given=encoder is not None)
    data, out = Path(data), Path(out)
    config = _resolved_for_data(config, data, encoder_given=encoder is not None)
    run, settings, mode = config.run, config.data, config.model.encoder_training
    name = f"train-wm ({mode})"
    loop = TrainingLoop(out, config, name=name, resume=resume, progress=progress, stop_after=stop_after)
    needed = config.loss.rollout_context + 1 + config.loss.rollout_steps if config.loss.rollout else 2
    if settings.sequence_length < needed:
        raise ValueError(
            f"data.sequence_length {settings.sequence_length} is too short: the rollout loss needs "
            f"loss.rollout_context + 1 + loss.rollout_steps = {needed} frames"
        )
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
    state = loop.start(process)

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
    if state is not None:
        for module, weights in zip(trained, state["modules"], strict=True):
            module.load_state_dict(weights)
    world_model.to(process.device)
    world_model.predictor.gradient_checkpointing = run.activation_checkpointing
    objective = WorldModelObjective(world_model, config.loss, config.model.freeze_latents)
    net = distributed.wrap(objective, trained, process, run.fsdp)
    optimizer = loop.optimizer(trained)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    keys = iter(loop.sampler(len(train_set)))
    pixels = None if mode == "frozen" else frame
    parameters = [p for module in trained for p in module.parameters() if p.requires_grad]

    def train_step(step: int) -> dict:
        def forward(micro: int):
            batch_keys = [next(keys) for _ in range(loop.per_rank)]
            batch = _batch(train_set, batch_keys, process.device, config.model.use_states, pixels)
            return net(**batch, step=step)

        metrics = loop.accumulate(net, forward)
        loop.update(optimizer, parameters, metrics)
        return metrics

    def save() -> None:
        modules = [module.state_dict() for module in trained]
        loop.save(modules=modules, optimizer=optimizer.state_dict())

    world_model.train()
    if config.model.freeze_latents:  # the latents inference computes: BatchNorm's running statistics kept
        world_model.encoder.eval()
        world_model.projector.eval()
    values = loop.loop(optimizer, train_step, save, rate="windows_per_second", shown=("loss", "copy_last"))
    summary = loop.summary(
        values,
        encoder_training=mode,
        latent=world_model.latent,
        train_episodes=len(train_episodes),
        val_episodes=len(val_episodes),
        action_dim=world_model.action_dim,
        frame_skip=world_model.frame_skip,
        history=world_model.history,
        data=str(data.resolve()),  # what train-agent replays start states from
    )
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
    return loop.finish(summary, world_model)


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
