"""Uncertain futures on top of a deterministic predictor: a stochastic latent, or an ensemble.

Both heads see one transition's context c = [latents z_t, action a_t, the predictor's next
latents mu_{t+1}] and say how the true next latents z_{t+1} may differ from mu_{t+1}:

- `StochasticHead`, a per-step latent variable s_t (DreamerV3's RSSM idea on our predictor): a
  learned prior p(s | c), a posterior q(s | c, z_{t+1}) that sees the observed next latents, and
  a decoder z_{t+1} ~ N(mu_{t+1} + f(c, s), sigma^2) with a learned per-dimension sigma.
  s is `groups` categoricals of `classes` each (one-hot, sampled with straight-through gradients,
  1% of a uniform mixed into every distribution) or a diagonal Gaussian of `groups` dimensions.
  Trained by the negative ELBO with KL balancing and free bits (`kl_balance`). Sampling s from
  the prior draws one future; its predictions fed back to the predictor draw a trajectory.
- `EnsembleHead`, the cheap alternative: `members` small networks each predicting z_{t+1} from
  c; their disagreement (spread) measures how far the context is from the data they fit.

The predictor itself is untouched: mu_{t+1} is its deterministic prediction, so a world model
with either head and no sampling reproduces the plain predictor exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import mlp

KINDS = ("categorical", "gaussian")


def kl_balance(
    kl_dynamics: Tensor, kl_representation: Tensor, dynamics: float, representation: float, free_nats: float
) -> Tensor:
    """DreamerV3's KL term per sample: `dynamics` * max(free, KL[sg(q) || p]) + `representation` *
    max(free, KL[q || sg(p)]). The two KLs have one value; the stop-gradients route the first to the
    prior (learn to predict) and the second, weighted less, to the posterior (stay predictable).
    Below `free_nats` nats neither pulls: the latent may carry that much information for free."""
    return dynamics * kl_dynamics.clamp_min(free_nats) + representation * kl_representation.clamp_min(
        free_nats
    )


@dataclass
class StochasticConfig:
    kind: str = "categorical"  # or "gaussian"
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    action_dim: int = 2
    groups: int = 32  # categoricals (or Gaussian dimensions)
    classes: int = 32  # classes per categorical
    hidden_dim: int = 256
    unimix: float = 0.01  # uniform mixed into every categorical (no probability is ever 0)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stochastic kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def context(latents: Tensor, actions: Tensor, predicted: Tensor) -> Tensor:
    """[z_t, a_t, mu_{t+1}] flattened: latents `(..., N, D)`, actions `(..., A)` -> `(..., 2 N D + A)`."""
    return torch.cat([latents.flatten(-2), actions, predicted.flatten(-2)], dim=-1)


class StochasticHead(nn.Module):
    """See the module docstring. Distribution parameters are tensors `(..., groups, classes)` of
    logits (categorical) or `(..., groups, 2)` of mean and std (Gaussian)."""

    def __init__(self, config: StochasticConfig | None = None, **overrides):
        super().__init__()
        self.config = c = dataclasses.replace(config or StochasticConfig(), **overrides)
        width, flat = 2 * c.tokens * c.latent_dim + c.action_dim, c.tokens * c.latent_dim
        params = c.groups * (c.classes if c.kind == "categorical" else 2)
        self.prior_net = mlp(width, c.hidden_dim, params)
        self.posterior_net = mlp(width + flat, c.hidden_dim, params)
        self.decoder = mlp(
            width + c.groups * (c.classes if c.kind == "categorical" else 1), c.hidden_dim, flat
        )
        self.log_std = nn.Parameter(torch.zeros(flat))  # of the decoded next latents, per dimension

    # ------------------------------------------------------------------ distributions

    def _params(self, raw: Tensor) -> Tensor:
        c = self.config
        if c.kind == "categorical":
            return raw.unflatten(-1, (c.groups, c.classes))  # logits
        mean, std = raw.unflatten(-1, (c.groups, 2)).unbind(-1)
        return torch.stack([mean, F.softplus(std) + 0.1], dim=-1)  # std >= 0.1: no collapse to a point

    def _probabilities(self, logits: Tensor) -> Tensor:
        probs = logits.softmax(-1)
        return (1 - self.config.unimix) * probs + self.config.unimix / self.config.classes

    def prior(self, ctx: Tensor) -> Tensor:
        return self._params(self.prior_net(ctx))

    def posterior(self, ctx: Tensor, target: Tensor) -> Tensor:
        return self._params(self.posterior_net(torch.cat([ctx, target.flatten(-2)], dim=-1)))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of s `(..., groups * classes)` (one-hot, straight-through) or `(..., groups)`."""
        if self.config.kind == "gaussian":
            mean, std = params.unbind(-1)
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return mean + std * noise
        probs = self._probabilities(params)
        index = torch.multinomial(probs.flatten(0, -2), 1, generator=generator).view(probs.shape[:-1])
        one_hot = F.one_hot(index, self.config.classes).to(probs.dtype)
        return (one_hot + probs - probs.detach()).flatten(-2)

    def kl(self, posterior: Tensor, prior: Tensor) -> Tensor:
        """KL[q || p] summed over the groups `(...)`, in nats."""
        if self.config.kind == "gaussian":
            (m_q, s_q), (m_p, s_p) = posterior.unbind(-1), prior.unbind(-1)
            kl = torch.log(s_p / s_q) + (s_q.square() + (m_q - m_p).square()) / (2 * s_p.square()) - 0.5
            return kl.sum(-1)
        q, p = self._probabilities(posterior), self._probabilities(prior)
        return (q * (q.log() - p.log())).sum((-2, -1))

    # ------------------------------------------------------------------ the next latents

    def decode(self, ctx: Tensor, s: Tensor, predicted: Tensor) -> Tensor:
        """The mean of the next latents given s: mu_{t+1} + f(c, s), `(..., N, D)`."""
        return predicted + self.decoder(torch.cat([ctx, s], dim=-1)).view_as(predicted)

    def log_density(self, target: Tensor, mean: Tensor) -> Tensor:
        """log N(target; mean, sigma^2) summed over the latent dimensions `(...)`."""
        z = (target - mean).flatten(-2) / self.log_std.exp()
        return -(0.5 * z.square() + self.log_std + 0.5 * math.log(2 * math.pi)).sum(-1)

    def draw(self, latents: Tensor, actions: Tensor, predicted: Tensor, generator=None) -> Tensor:
        """One future: s from the prior, decoded to the next latents' mean `(..., N, D)`."""
        ctx = context(latents, actions, predicted)
        return self.decode(ctx, self.sample(self.prior(ctx), generator), predicted)

    def forward(
        self, latents: Tensor, actions: Tensor, predicted: Tensor, target: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training terms per transition `(...)` each: the negative log-likelihood of `target` under
        a posterior sample's decoding, KL[sg(q) || p] and KL[q || sg(p)] (for `kl_balance`)."""
        ctx = context(latents, actions, predicted)
        posterior, prior = self.posterior(ctx, target), self.prior(ctx)
        decoded = self.decode(ctx, self.sample(posterior), predicted)
        nll = -self.log_density(target, decoded)
        return nll, self.kl(posterior.detach(), prior), self.kl(posterior, prior.detach())

    @torch.no_grad()
    def log_likelihood(
        self,
        target: Tensor,
        latents: Tensor,
        actions: Tensor,
        predicted: Tensor,
        samples: int = 64,
        generator=None,
    ) -> Tensor:
        """log p(target | c) estimated with `samples` prior draws: log mean_k N(target; decode(c, s_k),
        sigma^2), `(...)` in nats."""
        ctx = context(latents, actions, predicted)
        prior = self.prior(ctx)
        densities = torch.stack(
            [
                self.log_density(target, self.decode(ctx, self.sample(prior, generator), predicted))
                for _ in range(samples)
            ]
        )
        return torch.logsumexp(densities, dim=0) - math.log(samples)


@dataclass
class EnsembleConfig:
    members: int = 5
    tokens: int = 1
    latent_dim: int = 64
    action_dim: int = 2
    hidden_dim: int = 256


class EnsembleHead(nn.Module):
    """`members` networks, each c -> next latents mu_{t+1} + g_k(c) `(members, ..., N, D)`; each
    member starts from its own random weights, so they agree only where the data made them."""

    def __init__(self, config: EnsembleConfig | None = None, **overrides):
        super().__init__()
        self.config = c = dataclasses.replace(config or EnsembleConfig(), **overrides)
        width, flat = 2 * c.tokens * c.latent_dim + c.action_dim, c.tokens * c.latent_dim
        self.members = nn.ModuleList(mlp(width, c.hidden_dim, flat) for _ in range(c.members))

    def forward(self, latents: Tensor, actions: Tensor, predicted: Tensor) -> Tensor:
        ctx = context(latents, actions, predicted)
        return torch.stack([predicted + member(ctx).view_as(predicted) for member in self.members])

    def member(self, index: Tensor, latents: Tensor, actions: Tensor, predicted: Tensor) -> Tensor:
        """Row b's next latents by member `index[b]` `(B, N, D)` (one ensemble member per future)."""
        every = self(latents, actions, predicted)  # (M, B, N, D)
        return every[index, torch.arange(len(index), device=index.device)]

    def disagreement(self, latents: Tensor, actions: Tensor, predicted: Tensor) -> Tensor:
        """The members' spread: std over members, averaged over the latent dimensions `(...)`."""
        return self(latents, actions, predicted).std(0).flatten(-2).mean(-1)
