"""Data-collection policies `policy(observation, info) -> action`, made by `make_policy(name, space, seed)`.

- "random": independent uniform actions over the Box.
- "hold": a uniform random action held for a random number of steps (geometric, mean
  `HOLD_STEPS`), then a new one: the body moves in sustained pushes instead of jittering in place,
  so episodes reach farther from their start (see `benchmarks/` and tests for the coverage).
- "ou-noise": Ornstein-Uhlenbeck noise, x <- x + theta (0 - x) + sigma N(0, 1) with theta 0.15 and
  sigma 0.3, where [-1, 1] spans the action range; it starts from its stationary distribution
  (std ~0.57) and actions are clipped to the Box. Consecutive actions are correlated (lag-1
  autocorrelation ~0.85), so the arm sweeps instead of jittering: wider state coverage.
- "mixed": each episode is "random" or "ou-noise", half and half: the OU episodes carry the body
  far (a damped body pushed by independent actions barely leaves its start), the uniform ones show
  the model every pattern of actions a planner may try within one of its steps.
- "zero": the action closest to zero (no torque), for passive dynamics.

Policies are stateful: make a new one (with a new seed) for every episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

Policy = Callable[[Any, dict], np.ndarray]
POLICIES = ("random", "hold", "ou-noise", "mixed", "zero")
# what `collect` uses: the best across the goal-image tasks measured; the reward reacher's long
# episodes plan better from "random" data (docs/results.md)
DEFAULT_POLICY = "mixed"
HOLD_STEPS = 5  # mean steps an action of the "hold" policy persists


class HeldRandom:
    """Uniform random actions, each held for a geometric number of steps with mean `mean_steps`."""

    def __init__(
        self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, mean_steps: float = HOLD_STEPS
    ):
        self.low, self.high, self.rng, self.switch = low, high, rng, 1.0 / mean_steps
        self.action = rng.uniform(low, high)

    def __call__(self, observation: Any, info: dict) -> np.ndarray:
        if self.rng.random() < self.switch:
            self.action = self.rng.uniform(self.low, self.high)
        return self.action.astype(np.float32)


class OUNoise:
    """Ornstein-Uhlenbeck noise actions: correlated in time, mean-reverting to the middle of the Box."""

    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, theta=0.15, sigma=0.3):
        self.low, self.high, self.rng, self.theta, self.sigma = low, high, rng, theta, sigma
        stationary_std = sigma / np.sqrt(1.0 - (1.0 - theta) ** 2)
        self.x = rng.normal(0.0, stationary_std, size=low.shape)  # (A,) in units where the Box is [-1, 1]

    def __call__(self, observation: Any, info: dict) -> np.ndarray:
        """The next action (A,): one OU step, mapped from [-1, 1] onto the Box and clipped."""
        self.x = self.x - self.theta * self.x + self.sigma * self.rng.normal(size=self.x.shape)
        action = self.low + (np.clip(self.x, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
        return action.astype(np.float32)


def make_policy(name: str, action_space: spaces.Space, seed: int | None = None) -> Policy:
    """A data-collection policy by name (one of POLICIES) for a bounded Box action space."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"policies need a Box action space, got {type(action_space).__name__}")
    low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)  # (A,) each
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"policies need a bounded Box action space, got low={low} high={high}")
    rng = np.random.default_rng(seed)
    if name == "mixed":
        name = "random" if rng.random() < 0.5 else "ou-noise"
    if name == "random":
        return lambda observation, info: rng.uniform(low, high).astype(np.float32)
    if name == "hold":
        return HeldRandom(low, high, rng)
    if name == "zero":
        zero = np.clip(0.0, low, high).astype(np.float32)
        return lambda observation, info: zero.copy()
    return OUNoise(low, high, rng)
