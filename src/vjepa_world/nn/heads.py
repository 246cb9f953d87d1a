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
