"""Divided (factorized) space-time attention, TimeSformer style, on V-JEPA 2's token layout.

Blocks alternate: even blocks attend within each time step (space), odd blocks across time at
each spatial location (time). Parameters, token order and RoPE are those of joint attention, so
checkpoints are interchangeable; only who attends to whom changes. On a full clip the tokens are
regrouped so each attention is a batch of short sequences (cost T'S^2 + ST'^2 instead of (T'S)^2);
on a subset of tokens (a pretraining context) a boolean mask restricts joint attention instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .rope import grid_positions, rope_tables


def block_kind(index: int) -> str:
    """'space' for even blocks, 'time' for odd ones."""
    return "space" if index % 2 == 0 else "time"


class DividedAttention:
    """Runs blocks with divided attention for one forward over `(B, N, D)` tokens on grid (T', H', W').

    `positions`: None for the full clip, else the flat grid indices `(B, 1, n)` of the tokens.
    """

    def __init__(
        self, positions: Tensor | None, grid: tuple[int, int, int], batch: int, head_dim: int, dtype, device
    ):
        steps, height, width = grid
        self.batch, self.steps, self.per_step = batch, steps, height * width
        if positions is None:
            flat = torch.arange(steps * self.per_step, device=device).view(steps, self.per_step)  # (T', S)
            self.rope = {
                "space": self._grouped_tables(flat, (height, width), head_dim, dtype),  # (B*T', 1, S, hd)
                "time": self._grouped_tables(flat.T, (height, width), head_dim, dtype),  # (B*S, 1, T', hd)
            }
            self.masks = None
        else:
            t, h, w = grid_positions(positions[:, 0], (height, width))  # each (B, n)
            same_step = t[:, :, None] == t[:, None, :]
            same_place = (h[:, :, None] == h[:, None, :]) & (w[:, :, None] == w[:, None, :])
            self.masks = {"space": same_step[:, None], "time": same_place[:, None]}  # (B, 1, n, n)
            tables = rope_tables(t[:, None], h[:, None], w[:, None], head_dim, dtype)  # (B, 1, n, hd)
            self.rope = {"space": tables, "time": tables}

    def _grouped_tables(self, groups: Tensor, grid_hw, head_dim, dtype) -> tuple[Tensor, Tensor]:
        """Tables for tokens grouped as `groups` (G, L) -> (B*G, 1, L, hd), one group per sequence."""
        tables = rope_tables(*grid_positions(groups, grid_hw), head_dim, dtype)  # (G, L, hd) each
        return tuple(t[None, :, None].expand(self.batch, -1, -1, -1, -1).flatten(0, 1) for t in tables)

    def __call__(self, block: nn.Module, x: Tensor, index: int) -> Tensor:
        kind = block_kind(index)
        if self.masks is not None:
            return block(x, self.rope[kind], self.masks[kind])
        batch, tokens, dim = x.shape
        if kind == "space":
            out = block(x.reshape(batch * self.steps, self.per_step, dim), self.rope[kind])
            return out.reshape(batch, tokens, dim)
        by_place = (
            x.reshape(batch, self.steps, self.per_step, dim).transpose(1, 2).reshape(-1, self.steps, dim)
        )
        out = block(by_place, self.rope[kind])  # (B*S, T', D)
        return out.reshape(batch, self.per_step, self.steps, dim).transpose(1, 2).reshape(batch, tokens, dim)
