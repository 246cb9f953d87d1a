"""Masks: which tokens of a clip the predictor sees (context) and which it must predict (target).

Tokens are addressed by flat index on the clip's grid (T', H', W'), raster order, w fastest.
Every sampler draws from a `torch.Generator` only, so masks are reproducible under a seed, and
returns `(context_idx, target_idx)` as sorted int64 tensors of shapes `(B, n_ctx)`, `(B, n_tgt)`
with the same lengths for the whole batch (ready to batch through the encoder and predictor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Grid = tuple[int, int, int]  # (T', H', W') tokens along time, height, width
Masks = tuple[Tensor, Tensor]  # (context_idx (B, n_ctx), target_idx (B, n_tgt))


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=generator))


def _block_size(
    scale: float, aspect: tuple[float, float], height: int, width: int, generator
) -> tuple[int, int]:
    """(h, w) of a rectangle covering `scale` of an (height x width) frame, aspect ratio h/w ~ U(aspect)."""
    ratio = aspect[0] + float(torch.rand(1, generator=generator)) * (aspect[1] - aspect[0])
    area = scale * height * width
    h = min(max(round(math.sqrt(area * ratio)), 1), height)
    w = min(max(round(math.sqrt(area / ratio)), 1), width)
    return h, w


def _add_block(spatial: Tensor, size: tuple[int, int], generator) -> None:
    """Set a rectangle of `size` at a random position of the (H', W') boolean map to True."""
    height, width = spatial.shape
    top, left = _randint(height - size[0] + 1, generator), _randint(width - size[1] + 1, generator)
    spatial[top : top + size[0], left : left + size[1]] = True


def _tube(spatial_idx: Tensor, steps: Tensor, per_step: int) -> Tensor:
    """Flat token indices of the given spatial positions at each of the given time steps (sorted)."""
    return (steps[:, None] * per_step + spatial_idx[None, :]).flatten().sort().values


def _subsample(rows: list[Tensor], generator: torch.Generator) -> Tensor:
    """Equal-length batch: each row reduced to the shortest row's length by a random subset, sorted."""
    keep = min(len(r) for r in rows)
    picked = [r[torch.randperm(len(r), generator=generator)[:keep]].sort().values for r in rows]
    return torch.stack(picked)


@dataclass
class MultiBlockMask:
    """The released V-JEPA 2 mask: the target is the union of `num_blocks` spatial rectangles of
    `scale` of the frame each (aspect h/w uniform in `aspect`), every block spanning the whole
    clip in time; the context is every other token. One block size per batch, positions per clip,
    as upstream. Rows are then cut to the batch's shortest by random subsets."""

    num_blocks: int = 8
    scale: float = 0.15
    aspect: tuple[float, float] = (0.75, 1.5)
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"multiblock_{self.num_blocks}x{self.scale:g}"

    def sample(self, grid: Grid, batch: int, generator: torch.Generator) -> Masks:
        steps, height, width = grid
        size = _block_size(self.scale, self.aspect, height, width, generator)
        contexts, targets = [], []
        for _ in range(batch):
            spatial = torch.zeros(height, width, dtype=torch.bool)
            for _ in range(self.num_blocks):
                _add_block(spatial, size, generator)
            if spatial.all():  # leave the predictor something to see
                spatial.view(-1)[_randint(height * width, generator)] = False
            flat = spatial.flatten()
            every_step = torch.arange(steps)
            targets.append(_tube(torch.nonzero(flat).flatten(), every_step, height * width))
            contexts.append(_tube(torch.nonzero(~flat).flatten(), every_step, height * width))
        return _subsample(contexts, generator), _subsample(targets, generator)


@dataclass
class FutureMask:
    """Future-biased masking, for forecasting.

    With T' time steps of S = H'W' tokens (N = T'S tokens):
    - the last F = round(temporal_mask_ratio * T') steps (at least 1, at most T' - 1) are all target;
    - in each of the T' - F earlier (context) steps, the same k spatial positions are target too,
      k = round((round(mask_ratio * N) - F * S) / (T' - F)) clipped to [0, S - 1], so that
      `mask_ratio` of all tokens are target overall (when the future alone covers more than
      `mask_ratio`, k = 0 and the ratio is F / T'). The k positions are a union of random blocks of
      `block_scale` of the frame, trimmed at random to exactly k;
    - the context is every other token: (T' - F) * (S - k) tokens, the same count for every clip.
    """

    temporal_mask_ratio: float = 0.5
    mask_ratio: float = 0.75
    block_scale: float = 0.15
    aspect: tuple[float, float] = (0.75, 1.5)
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"future_{self.temporal_mask_ratio:g}"

    def counts(self, grid: Grid) -> tuple[int, int]:
        """(F future steps, k masked positions per context step) for a grid."""
        steps, height, width = grid
        if steps < 2:
            raise ValueError(
                f"future masking needs at least 2 tubelet steps, the clip has {steps}: use more frames"
            )
        per_step = height * width
        future = min(max(round(self.temporal_mask_ratio * steps), 1), steps - 1)
        extra = round(self.mask_ratio * steps * per_step) - future * per_step
        k = min(max(round(extra / (steps - future)), 0), per_step - 1)
        return future, k

    def sample(self, grid: Grid, batch: int, generator: torch.Generator) -> Masks:
        steps, height, width = grid
        future, k = self.counts(grid)
        per_step = height * width
        past, ahead = torch.arange(steps - future), torch.arange(steps - future, steps)
        contexts, targets = [], []
        for _ in range(batch):
            spatial = torch.zeros(height, width, dtype=torch.bool)
            while int(spatial.sum()) < k:
                before = spatial.clone()
                _add_block(
                    spatial, _block_size(self.block_scale, self.aspect, height, width, generator), generator
                )
                surplus = int(spatial.sum()) - k
                if surplus > 0:  # trim the newest block's positions at random to hit k exactly
                    new = torch.nonzero((spatial & ~before).flatten()).flatten()
                    drop = new[torch.randperm(len(new), generator=generator)[:surplus]]
                    spatial.view(-1)[drop] = False
            flat = spatial.flatten()
            masked, visible = torch.nonzero(flat).flatten(), torch.nonzero(~flat).flatten()
            targets.append(
                torch.cat([_tube(masked, past, per_step), _tube(torch.arange(per_step), ahead, per_step)])
            )
            contexts.append(_tube(visible, past, per_step))
        return torch.stack(contexts), torch.stack([t.sort().values for t in targets])


MaskSpec = MultiBlockMask | FutureMask
RELEASED_MASKS = (MultiBlockMask(num_blocks=8, scale=0.15), MultiBlockMask(num_blocks=2, scale=0.70))
MASK_TYPES = {"multiblock": MultiBlockMask, "future": FutureMask}


def mask_from_dict(values: dict[str, Any]) -> MaskSpec:
    """`{"type": "multiblock" | "future", ...fields}` -> a mask spec."""
    values = dict(values)
    kind = values.pop("type", "multiblock")
    if kind not in MASK_TYPES:
        raise ValueError(f"unknown mask type {kind!r}: choose one of {', '.join(MASK_TYPES)}")
    if "aspect" in values:
        values["aspect"] = tuple(values["aspect"])
    return MASK_TYPES[kind](**values)
