"""Training the learned goal energy (`TemporalDistanceHead`) on a dataset's latents.

The head's distance d(s, g) = ||phi(s) - phi(g)|| is the negated value of reaching frame g from
frame s, learned by goal-conditioned value iteration on the episodes as they are (Park et al.'s
Hilbert representations, from implicit value learning): reward -1 per step until the goal frame,
V(s, g) = -d(s, g), and the target r + discount * V_target(s', g) regressed with an expectile
above 1/2, which leans toward the best transitions in the data, so d approaches the fewest steps
any trajectory takes, not the average one a random policy takes. No actions and no states are
needed: it works on any dataset of episodes.

Transitions are consecutive frames of an episode (environment steps). Goals for a frame are the
frame itself (`goal_mix[0]`, distance 0), a later frame of its episode a geometric number of steps
ahead (`goal_mix[1]`), or any frame of the dataset (`goal_mix[2]`). The latents are the world
model's, computed once and fixed: the head never changes what the world model predicts. Goals may
come from their own latents of the same frames: a model whose observations show motion plans
toward goal images at rest, so its goals are the frames' latents at rest, and d(s, g) counts the
steps until the body is where frame g shows it, at any speed.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..nn.heads import DistanceHeadConfig, TemporalDistanceHead
from .config import GoalDistanceConfig


def default_steps(frames: int) -> int:
    """The head's optimiser steps for a dataset of `frames` frames: 12,000 up to 20,000 frames (400
    reacher episodes), growing with the square root beyond: more frames hold more (frame, goal) pairs
    to fit, and 1,600 reacher episodes planned at 64-80% after 12,000 steps, 94-96% after 24,000."""
    return max(12_000, int(round(12_000 * math.sqrt(frames / 20_000), -3)))


def expectile_weights(advantage: Tensor, expectile: float) -> Tensor:
    """|expectile - 1[advantage < 0]|: the asymmetric squared loss's weight per sample."""
    return (expectile - (advantage < 0).float()).abs()


class TransitionSampler:
    """Batches of (frame, next frame, goal frame, reached) indices into the flat latents of episodes
    whose lengths are `lengths` (frames concatenated in episode order)."""

    def __init__(self, lengths: list[int], config: GoalDistanceConfig, generator: torch.Generator):
        if not lengths or max(lengths) < 2:
            raise ValueError("the goal distance needs episodes of at least 2 frames")
        self.config, self.generator = config, generator
        lengths_t = torch.tensor(lengths)
        ends = lengths_t.cumsum(0)  # one past each episode's last frame
        self.total = int(ends[-1])
        self.last = torch.repeat_interleave(ends - 1, lengths_t)  # (M,) each frame's episode's last frame
        self.sources = torch.nonzero(torch.arange(self.total) < self.last).squeeze(1)  # frames with a next

    def __call__(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g, mix = self.generator, torch.tensor(self.config.goal_mix, dtype=torch.float)
        frames = self.sources[torch.randint(len(self.sources), (batch_size,), generator=g)]
        kind = torch.multinomial(
            mix / mix.sum(), batch_size, replacement=True, generator=g
        )  # 0 self, 1 later, 2 any
        ahead = torch.empty(batch_size).geometric_(1 - self.config.discount, generator=g).long()  # >= 1
        goals = torch.where(kind == 1, torch.minimum(frames + ahead, self.last[frames]), frames)
        anywhere = torch.randint(self.total, (batch_size,), generator=g)
        goals = torch.where(kind == 2, anywhere, goals)
        return frames, frames + 1, goals, goals == frames


def goal_distance_loss(
    head: TemporalDistanceHead,
    target: TemporalDistanceHead,
    latents: Tensor,
    next_latents: Tensor,
    goals: Tensor,
    reached: Tensor,
    discount: float,
    expectile: float,
) -> tuple[Tensor, dict]:
    """Implicit value learning on one batch of latents `(B, N, D)` each; `reached` `(B,)` marks
    goals equal to the frame itself. Returns the loss and its metrics."""
    reward, alive = reached.float() - 1.0, 1.0 - reached.float()  # -1 per step until the goal
    with torch.no_grad():  # one pass of the target over the three sets (small MLPs: launches dominate)
        now, following, goal = target(torch.cat([latents, next_latents, goals])).chunk(3)  # (B, K, E) each
        next_values = -TemporalDistanceHead.embedding_distance(following, goal)  # (B, K)
        backup = reward[:, None] + discount * alive[:, None] * next_values  # per member
        pessimistic = reward + discount * alive * next_values.min(-1).values  # (B,)
        advantage = pessimistic - (-TemporalDistanceHead.embedding_distance(now, goal)).mean(-1)
    now, goal = head(torch.cat([latents, goals])).chunk(2)
    values = -TemporalDistanceHead.embedding_distance(now, goal)  # (B, K)
    weights = expectile_weights(advantage, expectile)[:, None]
    loss = (weights * (backup - values).square()).mean()
    return loss, {"loss/goal_distance": loss.detach(), "goal_distance/mean": -values.detach().mean()}


def train_goal_distance(
    head: TemporalDistanceHead,
    episodes: list[Tensor],
    config: GoalDistanceConfig,
    *,
    goals: list[Tensor] | None = None,
    seed: int = 0,
    progress: bool = True,
    log=None,
) -> TemporalDistanceHead:
    """Fit `head` to the latents `(T_e, N, D)` of each episode (fixed, any device), with `goals` the
    goal latents of the same frames (default: the same latents); returns it in eval mode.
    `log(step, metrics)` receives the metrics every 100 steps."""
    latents = torch.cat(episodes)  # (M, N, D)
    goal_latents = latents if goals is None else torch.cat(goals)  # (M, N, D)
    if goal_latents.shape != latents.shape:
        raise ValueError(
            f"goal latents {tuple(goal_latents.shape)} must match the latents {tuple(latents.shape)}"
        )
    generator = torch.Generator().manual_seed(seed)
    sampler = TransitionSampler([len(e) for e in episodes], config, generator)
    target = copy.deepcopy(head).requires_grad_(False)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
    head.train()
    bar = tqdm(range(config.steps), desc="goal distance", unit="step", disable=not progress)
    for step in bar:
        frames, following, targets, reached = sampler(config.batch_size)
        loss, metrics = goal_distance_loss(
            head,
            target,
            latents[frames],
            latents[following],
            goal_latents[targets],
            reached.to(latents.device),
            config.discount,
            config.expectile,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(head.parameters()), config.target_ema)
        if (step + 1) % 100 == 0:
            bar.set_postfix(
                loss=f"{float(metrics['loss/goal_distance']):.4f}",
                distance=f"{float(metrics['goal_distance/mean']):.1f}",
            )
            if log is not None:
                log(step + 1, {k: float(v) for k, v in metrics.items()})
    return head.eval()


def fit_distance_head(
    episodes: list[Tensor],
    config: GoalDistanceConfig,
    goals: list[Tensor] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TemporalDistanceHead:
    """A new distance head for latents shaped like `episodes[0]` `(T, N, D)`, trained on them (and
    on `goals`, the goal latents of the same frames, when they differ)."""
    tokens, dim = episodes[0].shape[1:]
    torch.manual_seed(seed)
    head = TemporalDistanceHead(DistanceHeadConfig(tokens=tokens, latent_dim=dim, embed_dim=config.embed_dim))
    return train_goal_distance(head, episodes, config, goals=goals, seed=seed, progress=progress)
