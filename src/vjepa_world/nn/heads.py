"""Heads on a world model's latents.

`StateHead` decodes the proprioceptive state (the dataset's `observation.state`, standardised by
its mean and std) from one frame's latents. Trained beside the dynamics, it gives planning a goal
energy measured in the state space the task is about: the distance between the state decoded
from a predicted latent and the state decoded from the goal image (DINO-WM adds a proprioceptive
term to its cost in the same spirit, but needs the goal's state; here it is read off the image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class StateHeadConfig:
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    state_dim: int = 6
    hidden_dim: int = 256


class StateHead(nn.Module):
    """latents `(..., N, D)` -> standardised states `(..., S)`; buffers `mean`/`std`: the raw states'."""

    def __init__(self, config: StateHeadConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or StateHeadConfig(), **overrides)
        self.net = nn.Sequential(
            nn.Linear(config.tokens * config.latent_dim, config.hidden_dim),
            nn.GELU(),
            nn.Linear(config.hidden_dim, config.state_dim),
        )
        self.register_buffer("mean", torch.zeros(config.state_dim))
        self.register_buffer("std", torch.ones(config.state_dim))

    def set_statistics(self, states: Tensor) -> None:
        """Standardise targets with these raw states' per-dimension mean and std `(n, S)`."""
        self.mean.copy_(states.mean(0))
        self.std.copy_(states.std(0).clamp_min(1e-3))  # a constant dimension (std 0) stays finite

    def standardize(self, states: Tensor) -> Tensor:
        return (states - self.mean) / self.std

    def forward(self, latents: Tensor) -> Tensor:
        return self.net(latents.flatten(-2))


@dataclass
class DistanceHeadConfig:
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    embed_dim: int = 32  # the space whose Euclidean distance is the temporal distance
    hidden_dim: int = 256
    ensemble: int = 2  # independent embeddings: their mean distance is the energy, their min the TD target


class TemporalDistanceHead(nn.Module):
    """A learned goal energy: `distance(latents, goal)` = ||phi(latents) - phi(goal)||, trained
    (`train/goal_distance.py`) so that it counts the environment steps needed to get from one frame
    to the other, the shortest way the data shows. Latent distance only says how different two
    frames look; this says how far apart they are for the body (a wall or a swing-up in between)."""

    def __init__(self, config: DistanceHeadConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or DistanceHeadConfig(), **overrides)
        width = config.tokens * config.latent_dim
        self.embeddings = nn.ModuleList(
            nn.Sequential(
                nn.Linear(width, config.hidden_dim),
                nn.LayerNorm(config.hidden_dim),
                nn.GELU(),
                nn.Linear(config.hidden_dim, config.hidden_dim),
                nn.LayerNorm(config.hidden_dim),
                nn.GELU(),
                nn.Linear(config.hidden_dim, config.embed_dim),
            )
            for _ in range(config.ensemble)
        )

    def forward(self, latents: Tensor) -> Tensor:
        """latents `(..., N, D)` -> embeddings `(..., ensemble, embed_dim)`."""
        flat = latents.flatten(-2)
        return torch.stack([embed(flat) for embed in self.embeddings], dim=-2)

    def distances(self, latents: Tensor, goal: Tensor) -> Tensor:
        """Per-member distances `(..., ensemble)` between latents and goal latents (broadcast)."""
        return (self(latents) - self(goal)).square().sum(-1).add(1e-12).sqrt()

    def distance(self, latents: Tensor, goal: Tensor) -> Tensor:
        """The energy: mean distance over the ensemble `(...)`, in environment steps (discounted)."""
        return self.distances(latents, goal).mean(-1)
