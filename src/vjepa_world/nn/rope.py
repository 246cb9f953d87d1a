"""3D rotary position embedding, exactly as in the released V-JEPA 2 weights.

Each head's first 3*s dims (s = 2 * ((head_dim // 3) // 2)) are three segments rotated by the
token's time, row and column; the remaining dims are left as they are. Within a segment the
rotation pairs are adjacent elements (2i, 2i+1), but the s/2 frequencies are laid out as two
concatenated copies [f0 .. f(s/2-1), f0 .. f(s/2-1)] rather than interleaved, so element k uses
frequency k mod s/2. Upstream keeps this quirk for checkpoint compatibility, and so do we.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def rope_segment_dim(head_dim: int) -> int:
    """Dims per rotated segment (time, height, width) of one head."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(indices: Tensor, grid_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Flat token indices in raster order (t, h, w; w fastest) -> integer (t, h, w) coordinates."""
    height, width = grid_hw
    per_frame = height * width
    t = indices // per_frame
    within_frame = indices - t * per_frame
    h = within_frame // width
    w = within_frame - h * width
    return t, h, w


def rope_tables(
    t: Tensor, h: Tensor | None, w: Tensor | None, head_dim: int, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """cos and signed-sin tables `(*t.shape, head_dim)` for tokens at positions (t, h, w).

    The sin table carries the rotation's signs (-sin on even dims, +sin on odd ones), so that
    `apply_rope` needs only a swap of each pair. A segment whose position is None is not rotated
    (cos 1, sin 0): the action-conditioned predictor's action and state tokens rotate their
    temporal segment only. Angles are computed in float32 whatever `dtype` the tables come in.
    """
    s = rope_segment_dim(head_dim)
    half = s // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / half
    omega = (1.0 / 10000**exponent).repeat(2)  # (s,) the quirk: two copies, not interleaved
    zeros = torch.zeros(*t.shape, s, device=t.device)
    segments = [zeros if pos is None else pos.to(torch.float32)[..., None] * omega for pos in (t, h, w)]
    segments.append(torch.zeros(*t.shape, head_dim - 3 * s, device=t.device))  # unrotated tail
    angles = torch.cat(segments, dim=-1)  # (..., head_dim)
    signs = torch.tensor([-1.0, 1.0], device=t.device).repeat(head_dim // 2)
    return angles.cos().to(dtype), (angles.sin() * signs).to(dtype)


def full_grid_rope_tables(
    grid: tuple[int, int, int], head_dim: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """`rope_tables` of every token of a (T, H, W) grid in raster order, computed once per grid: an
    encoder needs the same tables on every call, and at batch 1 they cost as much as a block. Under
    torch.compile or torch.export they are computed in the graph (constants there), never cached:
    a traced table is a fake tensor."""
    if torch.compiler.is_compiling():
        return _grid_rope_tables(grid, head_dim, dtype, device)
    return _cached_grid_rope_tables(grid, head_dim, dtype, device)


def _grid_rope_tables(
    grid: tuple[int, int, int], head_dim: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    positions = torch.arange(grid[0] * grid[1] * grid[2], device=device)
    return rope_tables(*grid_positions(positions, grid[1:]), head_dim, dtype)


@functools.lru_cache(maxsize=16)
def _cached_grid_rope_tables(
    grid: tuple[int, int, int], head_dim: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Built outside inference mode, so that a table first made for inference still serves training."""
    with torch.inference_mode(False), torch.no_grad():
        return _grid_rope_tables(grid, head_dim, dtype, device)


def swap_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (x1, x0, x3, x2, ...)."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """Rotate queries or keys `(..., N, head_dim)` by tables broadcastable to them: each adjacent
    pair (a, b) becomes (a cos - b sin, b cos + a sin), with the pair's own two angles."""
    return torch.addcmul(x * cos, swap_pairs(x), signed_sin)
