"""How well a world model's predicted spread matches held-out futures: likelihood and coverage.

Every model here is a density over the true future latents z_h, h model steps after the observed
context, scored on held-out windows:
- "deterministic": the plain rollout mu_h with Gaussian noise, N(mu_h, sigma_h^2), sigma_h^2 per
  horizon and latent dimension fitted (maximum likelihood: the mean squared error) on other windows;
- "stochastic": K futures drawn through the stochastic latent; the mixture of N(z_hat_h^k, s_h^2),
  s_h^2 fitted like the deterministic one (the futures' squared errors);
- "ensemble": K futures, future k following member k mod M; the same mixture.
Every kind gets its noise level fitted per horizon the same way, so the scores differ only by
where the futures go (the head's one-step decoder sigma, learned teacher-forced, would give the
stochastic futures one width at every horizon).
Reported per horizon: the negative log-likelihood in nats per latent dimension (lower is better)
and the coverage of the central 90% interval (the fraction of dimensions whose true value falls
between the 5th and 95th percentiles of the model's samples; 0.90 is calibrated).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.episodes import SequenceDataset
from ..world_model import WorldModel

NORMAL_90 = 1.6448536  # the standard normal's 95th percentile


def _windows(dataset: SequenceDataset, batch_size: int, use_states: bool, device, stride: int = 1):
    """Batches (latents (B, T, N, D), actions (B, T, A), states or None) of every `stride`-th window."""
    indices = range(0, len(dataset), stride)
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        stacked = {
            key: torch.stack([item[key] for item in items]).to(device) for key in ("features", "actions")
        }
        states = torch.stack([item["states"] for item in items]).to(device) if use_states else None
        yield stacked["features"].float(), stacked["actions"], states


def _futures(world_model, latents, actions, states, context, horizon, kind, samples, generator):
    """(B, H, N, D) for kind "deterministic", else (B, K, H, N, D) sampled futures."""
    if kind == "deterministic":
        return world_model.rollout_window(latents, actions, states, context, horizon)
    pick = lambda x, steps: None if x is None else x[:, steps]
    past, ahead = slice(context), slice(context, context + horizon)
    history = world_model.observe(latents[:, past], actions[:, past], pick(states, past))
    imagined = world_model.imagined_states(pick(states, context), horizon)
    return world_model.rollout(
        latents[:, context], actions[:, ahead], imagined, history=history,
        samples=samples, uncertainty=kind, generator=generator,
    )  # fmt: skip


def _log_normal(target: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(target; mean, std^2) per element."""
    return -0.5 * ((target - mean) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def fitted_noise(
    world_model, windows, kind, context, horizon, samples=8, batch_size=64, use_states=False, seed=0, stride=1
):
    """sigma_h `(H, N, D)`: the root mean squared error of the kind's futures on `windows`."""
    device = next(world_model.predictor.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for latents, actions, states in _windows(windows, batch_size, use_states, device, stride):
        target = latents[:, context + 1 : context + 1 + horizon]  # (B, H, N, D)
        futures = _futures(world_model, latents, actions, states, context, horizon, kind, samples, generator)
        if futures.ndim == 5:  # (B, K, H, N, D): every future's error counts
            error = (futures - target[:, None]).square().flatten(0, 1)
        else:
            error = (futures - target).square()
        total, count = total + error.sum(0), count + len(error)
    return (total / count).sqrt().clamp_min(1e-4)


@torch.no_grad()
def future_likelihood(
    world_model: WorldModel,
    held_out: SequenceDataset,
    fit: SequenceDataset,
    *,
    context: int,
    horizon: int,
    samples: int = 32,
    batch_size: int = 64,
    use_states: bool = False,
    seed: int = 0,
    stride: int = 1,
) -> dict:
    """`{"nll": {kind: [h=1..H]}, "coverage90": {kind: [...]}, "windows": n}` for "deterministic" and
    each uncertainty head the model has, over every `stride`-th window of `held_out`; `fit` windows
    (training data) set the fitted noise levels."""
    device = next(world_model.predictor.parameters()).device
    kinds = ["deterministic"] + [k for k in ("stochastic", "ensemble") if getattr(world_model, k) is not None]
    settings = dict(
        context=context,
        horizon=horizon,
        samples=samples,
        batch_size=batch_size,
        use_states=use_states,
        stride=stride,
    )
    noise = {kind: fitted_noise(world_model, fit, kind, seed=seed, **settings) for kind in kinds}
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    sums = {kind: {"nll": torch.zeros(horizon), "covered": torch.zeros(horizon)} for kind in kinds}
    windows = 0
    for latents, actions, states in _windows(held_out, batch_size, use_states, device, stride):
        target = latents[:, context + 1 : context + 1 + horizon]  # (B, H, N, D)
        dims = target.shape[-1] * target.shape[-2]
        windows += len(target)
        for kind in kinds:
            futures = _futures(
                world_model, latents, actions, states, context, horizon, kind, samples, generator
            )
            if kind == "deterministic":
                std = noise["deterministic"]  # (H, N, D)
                log_p = _log_normal(target, futures, std).flatten(2).sum(-1)  # (B, H)
                covered = ((target - futures).abs() <= NORMAL_90 * std).float()
            else:
                std = noise[kind]  # (H, N, D)
                per_future = _log_normal(target[:, None], futures, std).flatten(3).sum(-1)  # (B, K, H)
                log_p = torch.logsumexp(per_future, dim=1) - math.log(samples)
                draws = futures + std * torch.randn(futures.shape, generator=generator, device=device)
                low, high = draws.quantile(0.05, dim=1), draws.quantile(0.95, dim=1)
                covered = ((target >= low) & (target <= high)).float()
            sums[kind]["nll"] += -(log_p / dims).sum(0).cpu()
            sums[kind]["covered"] += covered.flatten(2).mean(-1).sum(0).cpu()
    return {
        "nll": {kind: (s["nll"] / windows).tolist() for kind, s in sums.items()},
        "coverage90": {kind: (s["covered"] / windows).tolist() for kind, s in sums.items()},
        "windows": windows,
    }
