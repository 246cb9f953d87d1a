"""VideoEncoder: the V-JEPA 2 video ViT (tubelet patch embedding, RoPE blocks, final norm)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import PRESETS, Deprecated, EncoderConfig, get_preset
from .block import Block
from .divided import DividedAttention
from .init import init_weights, rescale_blocks
from .linear import linear
from .pretrained import PretrainedMixin
from .rope import full_grid_rope_tables, grid_positions, rope_tables
from .tokens import check_indices, gather_tokens


class PatchEmbed3D(nn.Module):
    """Non-overlapping tubelets (tubelet x patch x patch) -> tokens in raster order (t, h, w)."""

    def __init__(self, dim: int, patch_size: int, tubelet_size: int):
        super().__init__()
        self.kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(3, dim, kernel_size=self.kernel, stride=self.kernel)

    def forward(self, video: Tensor) -> Tensor:
        # The released weights are a Conv3d; one whose stride is its kernel is a matmul over tubelets.
        batch, channels, frames, height, width = video.shape
        t, p, _ = self.kernel
        cubes = video.reshape(batch, channels, frames // t, t, height // p, p, width // p, p)
        cubes = cubes.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4).flatten(1, 3)  # (B, N, 3*t*p*p)
        return linear(cubes, self.proj.weight.flatten(1), self.proj.bias)  # (B, N, D)


def as_video(video: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """Check an input clip and return it as `(B, 3, T, H, W)`.

    Images `(B, 3, H, W)` and single-frame clips are repeated to fill one tubelet, as the
    official pipelines do. Anything else that cannot be tokenised is a one-line ValueError.
    """
    if not isinstance(video, Tensor) or not video.is_floating_point():
        kind = video.dtype if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"video must be a float tensor normalised with ImageNet mean/std, got {kind}")
    if video.ndim == 4:
        video = video.unsqueeze(2)
    if video.ndim != 5:
        raise ValueError(
            f"video must be (B, 3, T, H, W) or an image batch (B, 3, H, W), got shape {tuple(video.shape)}"
        )
    _batch, channels, frames, height, width = video.shape
    if channels != 3:
        hint = " (channels last or (B, T, 3, H, W)? permute to (B, 3, T, H, W))" if 3 in video.shape else ""
        raise ValueError(f"video must have 3 colour channels in dim 1, got shape {tuple(video.shape)}{hint}")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"frame size {height}x{width} is not divisible by the patch size {patch_size}: "
            f"resize or crop to a multiple of {patch_size}"
        )
    if frames == 1:
        video = video.expand(-1, -1, tubelet_size, -1, -1)
    elif frames % tubelet_size:
        raise ValueError(
            f"{frames} frames is not a multiple of the tubelet size {tubelet_size}: "
            f"use {frames - frames % tubelet_size} or {frames + tubelet_size - frames % tubelet_size} frames"
        )
    return video


class VideoEncoder(PretrainedMixin, nn.Module):
    """V-JEPA 2 encoder: `(B, 3, T, H, W)` normalised video -> tokens `(B, N, D)`,
    N = (T / tubelet) * (H / patch) * (W / patch). RoPE positions follow the input's own grid, so
    any resolution (square or not) and any clip length work. `config.attention`: "joint" (released)
    or "factorized" (divided space-time attention, same parameters; see `nn/divided.py`)."""

    checkpoint_role = "encoder"

    def __init__(self, config: EncoderConfig | None = None, **overrides):
        super().__init__()
        config = dataclasses.replace(config or EncoderConfig(), **overrides)
        self.config = config
        self.patch_embed = PatchEmbed3D(config.dim, config.patch_size, config.tubelet_size)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.gradient_checkpointing = False  # recompute block activations in backward (saves memory)
        init_weights(self)
        rescale_blocks(self.blocks)

    def grid(self, video: Tensor) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a checked `(B, 3, T, H, W)` clip."""
        _, _, frames, height, width = video.shape
        c = self.config
        return frames // c.tubelet_size, height // c.patch_size, width // c.patch_size

    def forward(
        self, video: Tensor, context_idx: Tensor | None = None, out_layers: list[int] | None = None
    ) -> Tensor | list[Tensor]:
        """Encode a clip (or images). `context_idx` `(B, n)`: encode only those tokens, each keeping
        its position in the full grid (as pretraining does). `out_layers` (default: the config's):
        return the normalised tokens of those blocks as a list instead of the final tokens."""
        video = as_video(video, self.config.patch_size, self.config.tubelet_size)
        grid = self.grid(video)
        x = self.patch_embed(video)  # (B, N, D)
        positions = None  # the full grid, in raster order
        if context_idx is not None:
            check_indices("context_idx", context_idx, x.shape[0], x.shape[1])
            x = gather_tokens(x, context_idx)  # (B, n, D)
            positions = context_idx[:, None, :]  # (B, 1, n): broadcast over heads
        if self.config.attention == "factorized":
            divided = DividedAttention(positions, grid, x.shape[0], self.config.head_dim, x.dtype, x.device)
            run = lambda i, block, x: divided(block, x, i)
        else:
            rope = (
                full_grid_rope_tables(grid, self.config.head_dim, x.dtype, x.device)
                if positions is None
                else rope_tables(*grid_positions(positions, grid[1:]), self.config.head_dim, x.dtype)
            )
            run = lambda i, block, x: block(x, rope)
        layers = self.config.out_layers if out_layers is None else out_layers
        outputs = []
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(run, i, block, x, use_reentrant=False)
            else:
                x = run(i, block, x)
            if layers and i in layers:
                outputs.append(self.norm(x))
        return outputs if layers else self.norm(x)

    def encode(self, video: Tensor, pool: Literal["frame", "mean"] | None = None) -> Tensor:
        """Tokens `(B, N, D)`; `pool="frame"`: one vector per tubelet step `(B, T', D)`;
        `pool="mean"`: one per clip `(B, D)` (V-JEPA 2 has no CLS token)."""
        if pool not in (None, "frame", "mean"):
            raise ValueError(f"pool must be None, 'frame' or 'mean', got {pool!r}")
        checked = as_video(video, self.config.patch_size, self.config.tubelet_size)
        tokens = self(checked, out_layers=[])
        if pool == "mean":
            return tokens.mean(dim=1)
        if pool == "frame":
            steps = self.grid(checked)[0]
            return tokens.unflatten(1, (steps, -1)).mean(dim=2)
        return tokens


RANDOM = "random:"  # `random:<preset>`: a randomly initialised encoder of that preset


def load_encoder(
    source: str | os.PathLike, *, preset: str | None = None, key: str | None = None, **overrides
) -> VideoEncoder:
    """An encoder from a checkpoint (see `VideoEncoder.from_pretrained`), or a randomly initialised
    one from `random:<preset>` (smoke runs, pipelines that train their own). A path that does not
    exist is an error: a typo must not run on random weights."""
    source = str(source)
    name = source.removeprefix(RANDOM) if source.startswith(RANDOM) else None
    if name is None and not Path(source).exists() and source in PRESETS:
        warnings.warn(
            f"a bare preset name as the encoder ({source!r}) is deprecated and will be an error in the next "
            f"release: write random:{source} for randomly initialised weights",
            Deprecated,
            stacklevel=2,
        )
        name = source
    if name is not None:
        if preset or key:
            raise ValueError(f"{source} builds a fresh encoder: preset= and key= apply to checkpoints only")
        return VideoEncoder(get_preset(name).encoder, **overrides)
    if not Path(source).exists():
        raise FileNotFoundError(
            f"encoder checkpoint {source} does not exist: pass a .pt file or a model directory, or "
            f"random:<preset> for random weights ({', '.join(PRESETS)})"
        )
    return VideoEncoder.from_pretrained(source, preset=preset, key=key, **overrides)
