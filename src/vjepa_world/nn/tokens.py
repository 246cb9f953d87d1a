"""Helpers on token sequences `(B, N, D)` addressed by flat grid indices `(B, n)`."""

from __future__ import annotations

import torch
from torch import Tensor


def gather_tokens(x: Tensor, indices: Tensor) -> Tensor:
    """x `(B, N, D)`, indices `(B, n)` -> `(B, n, D)`."""
    return torch.gather(x, 1, indices.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def check_indices(name: str, indices: Tensor, batch: int, num_tokens: int | None = None) -> None:
    """One-line errors for index tensors that cannot address a batch of token grids."""
    if indices.ndim != 2 or indices.shape[0] != batch:
        raise ValueError(f"{name} must have shape (B={batch}, n), got {tuple(indices.shape)}")
    if indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must hold integer token indices, got {indices.dtype}")
    if indices.numel() and (indices.min() < 0 or (num_tokens is not None and indices.max() >= num_tokens)):
        raise ValueError(f"{name} holds indices outside [0, {num_tokens}) for this input's token grid")


def latest_same_position(tokens: Tensor, token_idx: Tensor, query_idx: Tensor, per_step: int) -> Tensor:
    """For each query index, the token at the same spatial position in the latest strictly earlier
    step, zeros where no such token exists. tokens `(B, n, D)` at flat grid indices token_idx
    `(B, n)`; query_idx `(B, m)`; `per_step` tokens per time step -> `(B, m, D)`. Compares every
    pair (memory B x m x n): meant for the small grids of CPU pretraining."""
    token_t, token_s = token_idx // per_step, token_idx % per_step  # (B, n)
    query_t, query_s = query_idx // per_step, query_idx % per_step  # (B, m)
    earlier = (token_s[:, None, :] == query_s[:, :, None]) & (token_t[:, None, :] < query_t[:, :, None])
    step = torch.where(earlier, token_t[:, None, :], -1)  # (B, m, n): the step of each candidate
    latest, source = step.max(dim=2)  # (B, m)
    found = (latest >= 0).unsqueeze(-1).to(tokens.dtype)
    return gather_tokens(tokens, source) * found
