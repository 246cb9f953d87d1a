"""World-model training (`vjepa-world train-wm`): the action-conditioned predictor on a frozen encoder.

1. Encoder: the one given, or else the default CPU-sized encoder pretrained here with the V-JEPA
   objective on the dataset's own videos (`OUT/encoder/`, resumed if interrupted).
2. Features: every frame encoded once (layer-normed latents, `OUT/features/`), reused by every
   epoch and by reruns with the same encoder.
3. Predictor: teacher-forcing L1 (true latents as context) plus rollout L1 (its own predictions fed
   back, `loss.rollout_steps` steps), AdamW with warmup-stable-decay. As in pretraining, the data
   order is a function of (seed, step), so a run killed and resumed from `checkpoint.pt` has the
   losses of an uninterrupted one.

The last episodes (`data.val_fraction`) are held out: at the end, the rollout error per horizon
on them, against copying the last latents and against the same model fed shuffled actions, goes
into `summary.json`. The run folder then loads with `WorldModel.from_pretrained(OUT)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..checkpoints import atomic_torch_save, atomic_write, read_checkpoint_file
from ..data.datasets import EpochSampler
from ..data.episodes import STATE_KEY, FeatureCache, LeRobotDataset, SequenceDataset, encode_episodes
from ..eval.world_model import rollout_errors
from ..nn import KVCache, VideoEncoder
from ..viz import plot_training_curves
from ..world_model import WorldModel
from . import distributed
from .config import EncoderPretraining, LossConfig, PretrainConfig, WorldModelConfig, build_config
from .logs import MetricsLog
from .pretrain import CHECKPOINT, check_run, param_groups, pretrain
from .schedules import set_learning_rate

log = logging.getLogger(__name__)


class WorldModelObjective(nn.Module):
    """loss, metrics = objective(latents (B, T, N, D), actions (B, T, A), states (B, T, S) or None)."""

    def __init__(self, world_model: WorldModel, loss: LossConfig):
        super().__init__()
        self.world_model, self.loss = world_model, loss

    def forward(self, latents: Tensor, actions: Tensor, states: Tensor | None) -> tuple[Tensor, dict]:
        world_model, context, horizon = self.world_model, self.loss.rollout_context, self.loss.rollout_steps
        pick = lambda x, steps: None if x is None else x[:, steps]
        cache = KVCache(world_model.predictor.config.depth)
        observed = slice(None, -1)  # steps 0..T-2 predict steps 1..T-1
        predicted = world_model.predict_next(
            latents[:, observed], actions[:, observed], pick(states, observed), cache=cache
        )  # (B, T-1, N, D)
        teacher_forcing = (predicted - latents[:, 1:]).abs().mean()
        loss = self.loss.teacher_forcing * teacher_forcing
        metrics = {"loss/teacher_forcing": teacher_forcing.detach()}
        if self.loss.rollout and horizon > 0:
            # the teacher-forcing pass already holds the observed context's keys and values
            ahead = slice(context, context + horizon)
            imagined = world_model.imagined_states(pick(states, context), horizon)  # unknown after `context`
            rolled = world_model.rollout(
                latents[:, context], actions[:, ahead], imagined, history=cache.first(context)
            )  # (B, horizon, N, D)
            rollout = (rolled - latents[:, context + 1 : context + 1 + horizon]).abs().mean()
            loss = loss + self.loss.rollout * rollout
            metrics["loss/rollout"] = rollout.detach()
        metrics["copy_last"] = (latents[:, 1:] - latents[:, :-1]).abs().mean()  # the bar to beat
        metrics["loss"] = loss.detach()
        return loss, metrics


def encoder_fingerprint(encoder: VideoEncoder) -> str:
    """A short hash of an encoder's config and weights: the feature cache's key."""
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(encoder.config), sort_keys=True).encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return f"{type(encoder).__name__}-{digest.hexdigest()[:16]}"


def pretrain_encoder(
    dataset_dir: Path, out: Path, settings: EncoderPretraining, seed: int, progress: bool
) -> VideoEncoder:
    """The default encoder for a new environment: V-JEPA pretraining on the dataset's episode videos
    (future-frame masking on, mild crops), resumed or reused if `out` already holds it."""
    dataset = LeRobotDataset(dataset_dir, state_key=None)
    videos = [dataset.video_path(e) for e in dataset.episode_indices]
    if not (out / "summary.json").exists():
        config: PretrainConfig = build_config(
            {
                "model": {
                    "preset": settings.preset,
                    "patch_size": settings.patch_size,
                    "num_frames": settings.num_frames,
                    "image_size": _video_size(dataset, videos[0]),
                    "temporal_mask_ratio": 0.5,
                },
                "data": {"frame_step": 1, "clips_per_video": 4, "crop_scale": [0.7, 1.0], "num_workers": 0},
                "optim": {
                    "steps": settings.steps,
                    "batch_size": settings.batch_size,
                    "lr": settings.lr,
                    "start_lr": settings.lr / 5,
                    "warmup_steps": settings.steps // 10,
                    "decay_steps": settings.steps // 5,
                    "ema": [0.99, 0.999],
                },
                "run": {"seed": seed, "checkpoint_every": max(settings.steps // 4, 1), "log_every": 10},
            }
        )
        pretrain(config, videos, out, resume=(out / CHECKPOINT).exists(), progress=progress)
    return VideoEncoder.from_pretrained(out)


def _video_size(dataset: LeRobotDataset, video: Path) -> int:
    """The (square) side of the dataset's frames, which the pretrained encoder then takes."""
    height, width = dataset.read_frames(dataset.episode_indices[0], [0]).shape[1:3]
    if height != width:
        raise ValueError(
            f"{video} has {width}x{height} frames: pass --encoder, or collect square frames to pretrain one"
        )
    return int(height)


def split_episodes(dataset_dir: Path, val_fraction: float) -> tuple[list[int], list[int]]:
    """(train, val) episode indices: the last `val_fraction` of the episodes (at least one) held out."""
    episodes = LeRobotDataset(dataset_dir, state_key=None).episode_indices
    held_out = min(max(round(val_fraction * len(episodes)), 1 if val_fraction > 0 else 0), len(episodes) - 1)
    return episodes[: len(episodes) - held_out], episodes[len(episodes) - held_out :]


def _batch(dataset: SequenceDataset, keys: list[int], device: torch.device, use_states: bool):
    """Stack windows `keys` (sampler keys, taken modulo the dataset size) on `device`."""
    items = [dataset[key % len(dataset)] for key in keys]
    latents = torch.stack([item["features"] for item in items]).to(device)  # (B, T, N, D)
    actions = torch.stack([item["actions"] for item in items]).to(device)  # (B, T, A)
    states = torch.stack([item["states"] for item in items]).to(device) if use_states else None
    return latents, actions, states


def _save_state(path: Path, world_model: WorldModel, optimizer, step: int, config: WorldModelConfig):
    state = {
        "predictor": world_model.predictor.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": json.dumps(config.to_dict()),
    }
    atomic_torch_save(state, path)


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
    optim, run, settings = config.optim, config.run, config.data
    data, out = Path(data), Path(out)
    checkpoint = check_run(out, resume, run.precision)
    if run.fsdp:
        raise ValueError(
            "train-wm runs DDP only (the predictor, even the released 300 M one, fits on a device; the "
            "encoder is frozen and only encodes once): drop run.fsdp"
        )
    needed = config.loss.rollout_context + 1 + config.loss.rollout_steps if config.loss.rollout else 2
    if settings.sequence_length < needed:
        raise ValueError(
            f"data.sequence_length {settings.sequence_length} is too short: the rollout loss needs "
            f"loss.rollout_context + 1 + loss.rollout_steps = {needed} frames"
        )
    state_key = STATE_KEY if config.model.use_states else None
    if state_key and state_key not in LeRobotDataset(data, state_key=None).features:
        raise ValueError(
            f"{data} has no {state_key!r} feature for the state token: train without one "
            "(--set model.use_states=false)"
        )
    train_episodes, val_episodes = split_episodes(data, settings.val_fraction)
    if encoder is None:
        encoder = pretrain_encoder(data, out / "encoder", config.encoder, run.seed, progress)
    process = distributed.setup(run.device)  # after pretraining, which leaves the process group
    per_rank, remainder = divmod(optim.batch_size, process.world_size)
    if remainder or per_rank == 0:
        raise ValueError(
            f"optim.batch_size {optim.batch_size} must be a multiple of the {process.world_size} processes"
        )

    encoder = encoder.to(process.device)
    encoding = WorldModel(encoder, action_dim=1)  # only its encode(): the predictor is built below
    key = encoder_fingerprint(encoder)
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
        encode_episodes(
            data,
            encoding.encode,
            out / "features",
            key=key,
            batch_size=settings.encode_batch,
            progress=progress,
        )
    distributed.barrier(process)
    features = FeatureCache(out / "features", key)  # complete now: the main process encoded

    window = dict(frame_skip=settings.frame_skip, features=features, state_key=state_key)
    train_set = SequenceDataset(data, settings.sequence_length, episodes=train_episodes, **window)
    first = train_set[0]

    torch.manual_seed(run.seed)
    widths = {k: v for k in ("dim", "depth", "num_heads") if (v := getattr(config.model, k)) is not None}
    world_model = WorldModel(
        encoder,
        action_dim=first["actions"].shape[-1],
        state_dim=first["states"].shape[-1] if config.model.use_states else 0,
        preset=config.model.preset,
        **widths,
    )
    step, state = 0, None
    if resume and checkpoint.exists():
        state = read_checkpoint_file(checkpoint)
        world_model.predictor.load_state_dict(state["predictor"])
        step = state["step"]
        log.info("resuming %s at step %d", out, step)
    world_model.to(process.device)
    world_model.predictor.gradient_checkpointing = run.activation_checkpointing
    objective = WorldModelObjective(world_model, config.loss)
    net = distributed.wrap(objective, [world_model.predictor], process, run.fsdp)
    optimizer = torch.optim.AdamW(
        param_groups([world_model.predictor], optim.weight_decay), betas=optim.betas, eps=optim.eps
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    sampler = EpochSampler(
        len(train_set), run.seed, process.rank, process.world_size, start=step * per_rank, batch_size=per_rank
    )
    keys = iter(sampler)
    autocast = distributed.autocast(process, run.precision)
    metrics_log = MetricsLog(out, enabled=process.is_main, start_step=step)
    end = optim.steps if stop_after is None else min(optim.steps, stop_after)
    bar = tqdm(total=optim.steps, initial=step, desc="train-wm", unit="step", disable=not progress)
    bar.disable = bar.disable or not process.is_main
    started = time.perf_counter()
    values: dict[str, float] = {}
    while step < end:
        tick = time.perf_counter()
        lr = set_learning_rate(optimizer, optim, step)
        batch_keys = [next(keys) for _ in range(per_rank)]
        batch = _batch(train_set, batch_keys, process.device, config.model.use_states)
        with autocast:
            loss, metrics = net(*batch)
        loss.backward()
        if optim.grad_clip:
            parameters = world_model.predictor.parameters()
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
        "train_episodes": len(train_episodes),
        "val_episodes": len(val_episodes),
        "action_dim": world_model.action_dim,
        "seconds": round(time.perf_counter() - started, 2),
        "processes": process.world_size,
    }
    if summary["finished"] and process.is_main:
        world_model.eval()
        if val_episodes:
            context, horizon = config.loss.rollout_context, settings.eval_horizon
            val_set = SequenceDataset(data, context + 1 + horizon, episodes=val_episodes, **window)
            summary["val"] = rollout_errors(
                world_model, val_set, horizon, context=context, use_states=config.model.use_states
            )
        world_model.save_pretrained(out)
        plot_training_curves(out, out / "training_curves.png")
        atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    distributed.teardown()
    return summary
