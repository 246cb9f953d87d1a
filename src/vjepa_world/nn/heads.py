"""Heads on a world model's latents.

`RewardHead` and `ContinueHead` (DreamerV3's): the reward of the transition into a latent, as
symlog two-hot regression over 255 bins (a classification that copes with rewards of any scale
and with sparse ones), and the probability that the episode goes on (a binary head). `TwoHot`
is the regression itself, shared with the agent's critic.

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
import torch.nn.functional as F
from torch import Tensor, nn


def symlog(x: Tensor) -> Tensor:
    """sign(x) log(1 + |x|): compresses large magnitudes, identity-like near 0 (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """The inverse of `symlog`: sign(x) (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Symlog two-hot regression: a scalar y is encoded as weights on the two bins (evenly spaced
    in symlog space over [-20, 20]) that bracket symlog(y), split by linear interpolation, and
    decoded as symexp of the probability-weighted bin average. Its loss is the cross-entropy
    between predicted logits `(..., bins)` and the encoded target."""

    def __init__(self, bins: int = 255, limit: float = 20.0):
        super().__init__()
        even = torch.linspace(-limit, limit, bins)
        symmetric = (even - even.flip(0)) / 2  # exactly b[i] = -b[-1 - i] (linspace is off by rounding)
        self.register_buffer("bins", symmetric, persistent=False)

    def encode(self, values: Tensor) -> Tensor:
        """values `(...)` -> two-hot weights `(..., bins)` (values beyond the range: the end bin)."""
        bins = self.bins
        x = symlog(values.float()).clamp(bins[0], bins[-1])
        above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(1, len(bins) - 1)  # first bin > x
        below = above - 1
        span = bins[above] - bins[below]
        weight_above = ((x - bins[below]) / span).clamp(0, 1)
        weights = torch.zeros(*x.shape, len(bins), device=x.device)
        weights.scatter_(-1, below[..., None], (1 - weight_above)[..., None])
        weights.scatter_add_(-1, above[..., None], weight_above[..., None])
        return weights

    def decode(self, probabilities: Tensor) -> Tensor:
        """Weights or probabilities `(..., bins)` -> values `(...)`. The bins are symmetric about 0:
        each negative term is added to its positive mirror first, so uniform probabilities decode
        to exactly 0 (a left-to-right sum leaves a rounding error)."""
        terms = probabilities * self.bins
        half = terms.shape[-1] // 2
        mirrored = terms[..., :half].flip(-1) + terms[..., -half:]
        middle = terms[..., half : half + 1].sum(-1) if terms.shape[-1] % 2 else 0.0
        return symexp(mirrored.sum(-1) + middle)

    def predict(self, logits: Tensor) -> Tensor:
        return self.decode(logits.float().softmax(-1))

    def loss(self, logits: Tensor, values: Tensor) -> Tensor:
        """Cross-entropy of logits `(..., bins)` against the two-hot encoding of `values` `(...)`, `(...)`."""
        return -(self.encode(values) * F.log_softmax(logits.float(), -1)).sum(-1)


def mlp(width: int, hidden: int, out: int, layers: int = 2, zero_last: bool = False) -> nn.Sequential:
    """`layers` hidden Linear-LayerNorm-SiLU blocks, then a Linear to `out` (zeroed: predictions
    start at 0 / uniform, as DreamerV3 starts its reward head and critic)."""
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(width if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.SiLU()]
    parts.append(nn.Linear(hidden if layers else width, out))
    if zero_last:
        nn.init.zeros_(parts[-1].weight)
        nn.init.zeros_(parts[-1].bias)
    return nn.Sequential(*parts)


@dataclass
class RewardHeadConfig:
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    hidden_dim: int = 256
    bins: int = 255


class RewardHead(nn.Module):
    """latents `(..., N, D)` of a step -> the reward of the transition into it (symlog two-hot):
    `logits` `(..., bins)`, `predict` `(...)`, `loss(latents, rewards)` `(...)`."""

    def __init__(self, config: RewardHeadConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or RewardHeadConfig(), **overrides)
        self.net = mlp(config.tokens * config.latent_dim, config.hidden_dim, config.bins, zero_last=True)
        self.twohot = TwoHot(config.bins)

    def forward(self, latents: Tensor) -> Tensor:
        return self.net(latents.flatten(-2))

    def predict(self, latents: Tensor) -> Tensor:
        return self.twohot.predict(self(latents))

    def loss(self, latents: Tensor, rewards: Tensor) -> Tensor:
        return self.twohot.loss(self(latents), rewards)


@dataclass
class ContinueHeadConfig:
    tokens: int = 1
    latent_dim: int = 64
    hidden_dim: int = 256


class ContinueHead(nn.Module):
    """latents `(..., N, D)` -> the logit that the episode goes on after this step (1 - done)."""

    def __init__(self, config: ContinueHeadConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or ContinueHeadConfig(), **overrides)
        self.net = mlp(config.tokens * config.latent_dim, config.hidden_dim, 1)

    def forward(self, latents: Tensor) -> Tensor:
        return self.net(latents.flatten(-2)).squeeze(-1)

    def predict(self, latents: Tensor) -> Tensor:
        """The probability of continuing `(...)`."""
        return torch.sigmoid(self(latents))

    def loss(self, latents: Tensor, continues: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self(latents), continues.float(), reduction="none")


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
class InverseDynamicsConfig:
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    action_dim: int = 2  # the world model's action: a model step's environment actions, concatenated
    hidden_dim: int = 256


class InverseDynamicsHead(nn.Module):
    """(latents of a step, latents of the next) `(..., N, D)` each -> the action `(..., A)` taken in
    between. Trained with the encoder (PLDM's inverse-dynamics term), it asks the latent to keep
    what the actions move; on ReacherGoal without proprioception it did not help (docs/results.md)."""

    def __init__(self, config: InverseDynamicsConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or InverseDynamicsConfig(), **overrides)
        self.net = mlp(2 * config.tokens * config.latent_dim, config.hidden_dim, config.action_dim)

    def forward(self, latents: Tensor, next_latents: Tensor) -> Tensor:
        return self.net(torch.cat([latents.flatten(-2), next_latents.flatten(-2)], dim=-1))


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
        return self.embedding_distance(self(latents), self(goal))

    @staticmethod
    def embedding_distance(embeddings: Tensor, goal_embeddings: Tensor) -> Tensor:
        """Euclidean distance over the last dimension of two embeddings `(..., ensemble, E)`."""
        return (embeddings - goal_embeddings).square().sum(-1).add(1e-12).sqrt()

    def distance(self, latents: Tensor, goal: Tensor) -> Tensor:
        """The energy: mean distance over the ensemble `(...)`, in environment steps (discounted)."""
        return self.distances(latents, goal).mean(-1)
