"""Training augmentation for video clips: one random resized crop and flip shared by all frames."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .video import normalize


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(high: int, generator: torch.Generator) -> int:
    """An int in [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


def crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (0.75, 1.35),
) -> tuple[int, int, int, int]:
    """`(top, left, h, w)` drawn by torchvision's RandomResizedCrop rule: area fraction uniform in
    `scale`, aspect ratio (w / h) log-uniform in `ratio`, 10 tries, then a centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(*scale, generator)
        aspect = math.exp(_uniform(*log_ratio, generator))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(height - h + 1, generator), _randint(width - w + 1, generator), h, w
    # fallback: the largest centre crop whose aspect ratio lies in `ratio`
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    frames: np.ndarray,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (0.75, 1.35),
    flip: bool = True,
) -> Tensor:
    """uint8 `(T, H, W, 3)` -> ImageNet-normalised float `(3, T, size, size)`: the same random crop
    (resized to `size`) and horizontal flip (p=0.5) for every frame, so motion stays consistent.
    All randomness comes from `generator`, so a seeded generator gives the same clip anywhere."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got shape {frames.shape}")
    top, left, h, w = crop_box(frames.shape[1], frames.shape[2], generator, scale, ratio)
    crop = np.ascontiguousarray(frames[:, top : top + h, left : left + w])  # (T, h, w, 3)
    video = torch.from_numpy(crop).permute(0, 3, 1, 2).float().div_(255)  # (T, 3, h, w)
    video = F.interpolate(video, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if flip and torch.rand((), generator=generator).item() < 0.5:
        video = video.flip(-1)
    return normalize(video)
