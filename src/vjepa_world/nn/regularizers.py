"""Anti-collapse regularisers and collapse signals, one place for every training loop.

- `sigreg`: SIGReg of LeJEPA (arXiv 2511.08544). Project the batch embeddings on random unit
  directions; for each 1-D projection compare its empirical characteristic function with the
  standard normal's (the Epps-Pulley statistic) on a trapezoid grid of t in [0, t_max] weighted
  by exp(-t^2 / 2). Zero in expectation for N(0, I) embeddings, large for collapsed, shifted or
  scaled ones; it needs no EMA teacher and no stop-gradient.
- `vicreg`: the variance (hinge on each dimension's std) and covariance (off-diagonal) terms of
  VICReg, the alternative PLDM uses.
- `effective_rank`, `dimension_std`: what to log to see a collapse coming; `collapsed`: the alarm.
"""

from __future__ import annotations

import torch
from torch import Tensor

REGULARIZERS = ("sigreg", "vicreg")


def sigreg(
    embeddings: Tensor,
    directions: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Epps-Pulley normality statistic of `(N, D)` embeddings averaged over random 1-D projections.

    statistic = N * sum_t w_t [(mean cos(t x) - exp(-t^2/2))^2 + (mean sin(t x))^2], with trapezoid
    weights w_t times exp(-t^2/2); scaled by N as in LeJEPA, so a Gaussian batch scores O(1).
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"sigreg takes (N >= 2, D) embeddings, got {tuple(embeddings.shape)}")
    x = embeddings.float()
    rows, dim = x.shape
    device = x.device
    projection = torch.randn(dim, directions, generator=generator, device="cpu").to(device)
    projection = projection / projection.norm(dim=0, keepdim=True)
    projected = x @ projection  # (N, P)
    t = torch.linspace(0.0, t_max, knots, device=device)  # (K,)
    gaussian = torch.exp(-t.square() / 2)  # the standard normal's characteristic function
    weights = torch.full((knots,), t_max / (knots - 1), device=device)
    weights[0] = weights[-1] = weights[0] / 2  # trapezoid rule
    weights = weights * gaussian
    phase = projected[:, :, None] * t  # (N, P, K)
    real = phase.cos().mean(0) - gaussian  # (P, K)
    imaginary = phase.sin().mean(0)
    error = real.square() + imaginary.square()
    return rows * (error * weights).sum(-1).mean()


def vicreg(embeddings: Tensor, target_std: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg's variance hinge mean(relu(target_std - std_d)) plus the mean squared off-diagonal
    covariance, of `(N, D)` embeddings: 0 for decorrelated dimensions of std >= target_std."""
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"vicreg takes (N >= 2, D) embeddings, got {tuple(embeddings.shape)}")
    x = embeddings.float()
    x = x - x.mean(0)
    std = torch.sqrt(x.var(0) + eps)
    variance = torch.relu(target_std - std).mean()
    covariance = (x.T @ x) / (x.shape[0] - 1)  # (D, D)
    off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
    return variance + off_diagonal.square().sum() / x.shape[1]


def regularizer(name: str, embeddings: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """`sigreg` or `vicreg` by name."""
    if name == "sigreg":
        return sigreg(embeddings, generator=generator)
    if name == "vicreg":
        return vicreg(embeddings)
    raise ValueError(f"unknown regulariser {name!r}: choose one of {', '.join(REGULARIZERS)}")


def effective_rank(features: Tensor, max_rows: int = 512) -> Tensor:
    """exp(entropy) of the normalised singular values of `(n, D)` features: ~1 when collapsed.
    At most `max_rows` rows, evenly spaced (tokens of every clip of a batch, not the first clip's)."""
    stride = -(-len(features) // max_rows)
    rows = features.detach().float()[::stride]
    values = torch.linalg.svdvals(rows - rows.mean(0))
    p = values / values.sum().clamp_min(1e-12)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def collapsed(rank: float | Tensor, spread: float | Tensor, dim: int) -> bool:
    """Whether layer-normed `dim`-wide features (each of unit variance over its dims) collapsed:
    nearly one vector for every input (`spread`, their std over the batch averaged over dims, below
    0.05; a random encoder's tokens ~0.5) or fewer than max(2, dim / 32) effective dimensions."""
    return float(spread) < 0.05 or float(rank) < max(2.0, dim / 32)


def dimension_std(features: Tensor) -> Tensor:
    """Per-dimension std over the batch of `(n, D)` features, `(D,)`: zeros mean a collapse."""
    return features.detach().float().std(0)
