"""The encoder of a world model: its architecture, and V-JEPA pretraining on a dataset's own videos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data.episodes import LeRobotDataset
from ..jepa import VJEPAConfig
from ..nn import VideoEncoder
from .config import EncoderPretraining, PretrainConfig, build_config
from .pretrain import CHECKPOINT, pretrain


def encoder_architecture(settings: EncoderPretraining, image_size: int) -> VJEPAConfig:
    """The V-JEPA model config of the default encoder: what is pretrained, or trained from scratch."""
    return VJEPAConfig(
        preset=settings.preset,
        patch_size=settings.patch_size,
        encoder_depth=settings.depth,
        encoder_dim=settings.dim,
        num_frames=settings.num_frames,
        image_size=image_size,
        temporal_mask_ratio=0.5,
    )


def pretrain_encoder(
    dataset_dir: Path, out: Path, settings: EncoderPretraining, seed: int, progress: bool
) -> VideoEncoder:
    """The default encoder for a new environment: V-JEPA pretraining on the dataset's episode videos
    (future-frame masking on, mild crops), resumed or reused if `out` already holds it."""
    dataset = LeRobotDataset(dataset_dir, state_key=None)
    videos = [dataset.video_path(e) for e in dataset.episode_indices]
    if not (out / "summary.json").exists():
        model = encoder_architecture(settings, encoder_side(frame_shape(dataset), settings.patch_size))
        config: PretrainConfig = build_config(
            {
                "model": {k: v for k, v in dataclasses.asdict(model).items() if v is not None},
                "data": {"frame_step": 1, "clips_per_video": 4, "crop_scale": [0.7, 1.0], "num_workers": 0},
                "optim": {
                    "steps": settings.steps,
                    "batch_size": settings.batch_size,
                    "lr": settings.lr,
                    "warmup_steps": settings.steps // 10,
                    "decay_steps": settings.steps // 5,
                    "ema": [0.99, 0.999],
                }
                | ({"start_lr": settings.lr / 5} if settings.steps >= 10 else {}),  # only with a warmup
                "run": {"seed": seed, "checkpoint_every": max(settings.steps // 4, 1), "log_every": 10},
            }
        )
        pretrain(config, videos, out, resume=(out / CHECKPOINT).exists(), progress=progress)
    return VideoEncoder.from_pretrained(out)


def frame_shape(dataset: LeRobotDataset) -> tuple[int, int]:
    """(height, width) of the dataset's frames."""
    height, width = dataset.read_frames(dataset.episode_indices[0], [0]).shape[1:3]
    return int(height), int(width)


def encoder_side(frame: tuple[int, int], patch_size: int) -> int:
    """The square input side of the default encoder for frames of this (height, width): the shorter
    side rounded to a multiple of the patch (84 x 84 frames -> 80 px, 5 x 5 patches of 16); the
    world model resizes every frame to it."""
    return max(patch_size, round(min(frame) / patch_size) * patch_size)
