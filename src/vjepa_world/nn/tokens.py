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
