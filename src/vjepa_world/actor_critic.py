"""The agent's parts that know nothing of world models: the actor and critic networks on latent
features, the lambda-returns they learn from, and the return scale that normalises advantages
(DreamerV3's choices; `agent.py` trains them in imagination)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn.heads import TwoHot, mlp


def lambda_returns(rewards: Tensor, values: Tensor, continues: Tensor, discount: float, lam: float) -> Tensor:
    """R_t = r_{t+1} + discount c_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H, for t < H.
    rewards, continues `(B, H)` of the transitions into steps 1..H; values `(B, H + 1)` of steps
    0..H -> returns `(B, H)` of steps 0..H-1."""
    returns = [values[:, -1]]
    for t in reversed(range(rewards.shape[1])):
        bootstrap = (1 - lam) * values[:, t + 1] + lam * returns[-1]
        returns.append(rewards[:, t] + discount * continues[:, t] * bootstrap)
    return torch.stack(returns[:0:-1], dim=1)


class ReturnScale(nn.Module):
    """max(1, EMA of (95th - 5th percentile) of the returns): what advantages are divided by."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("range", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def update(self, returns: Tensor) -> Tensor:
        flat = returns.detach().flatten().float()
        spread = torch.quantile(flat, 0.95) - torch.quantile(flat, 0.05)
        if self.updates == 0:
            self.range.copy_(spread)
        else:
            self.range.mul_(self.decay).add_((1 - self.decay) * spread)
        self.updates += 1
        return self.range.clamp_min(1.0)


class Actor(nn.Module):
    """features `(..., F)` -> an action distribution: continuous (Normal, bounded mean) over
    `action_dim` values in [-1, 1] with its std kept in `std_range`, or discrete (categorical) over
    `action_dim` choices with `unimix` of the uniform mixed in."""

    def __init__(
        self,
        features: int,
        action_dim: int,
        discrete: bool,
        hidden_dim: int,
        layers: int,
        std_range: tuple[float, float] = (0.1, 1.0),
        unimix: float = 0.01,
    ):
        super().__init__()
        self.discrete, self.std_range, self.unimix = discrete, std_range, unimix
        outputs = action_dim if discrete else 2 * action_dim
        self.net = mlp(features, hidden_dim, outputs, layers)
        with torch.no_grad():  # a near-uniform, near-zero-mean policy at the start (DreamerV3's outscale)
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()

    def forward(self, features: Tensor) -> torch.distributions.Distribution:
        out = self.net(features)
        if self.discrete:
            probs = (1 - self.unimix) * out.softmax(-1) + self.unimix / out.shape[-1]
            return torch.distributions.OneHotCategorical(probs=probs)
        mean, std = out.chunk(2, dim=-1)
        low, high = self.std_range
        std = (high - low) * torch.sigmoid(std + 2.0) + low
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A sampled action `(..., A)`, drawn with `generator` (reproducible)."""
        dist = self(features)
        if self.discrete:
            probs = dist.probs
            index = torch.multinomial(probs.flatten(0, -2), 1, generator=generator).view(probs.shape[:-1])
            return F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        normal = dist.base_dist
        noise = torch.randn(normal.loc.shape, generator=generator, device=normal.loc.device)
        return normal.loc + normal.scale * noise

    def mode(self, features: Tensor) -> Tensor:
        """The most likely action (what evaluation executes), without building the distribution
        (which takes half the actor's time on a CPU): the bounded mean, or the most likely choice
        (the uniform mix keeps the argmax)."""
        out = self.net(features)
        if self.discrete:
            return F.one_hot(out.argmax(-1), out.shape[-1]).float()
        return torch.tanh(out.chunk(2, dim=-1)[0])


class Critic(nn.Module):
    """features `(..., F)` -> two-hot logits of the return `(..., bins)`; `value` decodes them."""

    def __init__(self, features: int, hidden_dim: int, layers: int, bins: int = 255):
        super().__init__()
        self.net = mlp(features, hidden_dim, bins, layers, zero_last=True)
        self.twohot = TwoHot(bins)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)

    def value(self, features: Tensor) -> Tensor:
        return self.twohot.predict(self(features))
