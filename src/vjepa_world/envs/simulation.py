"""The true simulator as a world model: play candidate action sequences from an environment's current
state and hand back what they lead to, leaving the environment as it was.

Each built-in goal task has `simulate(actions, every, render)` on top of `simulate_plans`; planning
with it (`eval/ceiling.py`) gives the ceiling a learned world model could reach with the same energy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def simulate_plans(
    actions: np.ndarray,
    every: int,
    action_dim: int,
    *,
    save: Callable[[], Any],
    restore: Callable[[Any], None],
    act: Callable[[np.ndarray], None],
    point: Callable[[], np.ndarray],
    render: Callable[[], np.ndarray] | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Play each action sequence `(S, H, A)` (actions clipped to [-1, 1]) from the state `save()`
    returns, and after every `every`-th step record the tracked point `point()` `(P,)` and, with
    `render`, the frame. Returns frames `(S, H // every, h, w, 3)` (None without `render`) and
    points `(S, H // every, P)`; the saved state is restored at the end."""
    actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    if actions.ndim != 3 or actions.shape[-1] != action_dim or actions.shape[1] % every:
        raise ValueError(
            f"actions must be (samples, horizon (a multiple of {every}), {action_dim}), got {actions.shape}"
        )
    samples, horizon = actions.shape[0], actions.shape[1] // every
    start = save()
    frames, points = [], []
    try:
        for plan in actions:
            restore(start)
            for block in plan.reshape(horizon, every, action_dim):
                for action in block:
                    act(action)
                points.append(point())
                if render is not None:
                    frames.append(render())
    finally:
        restore(start)
    points = np.stack(points).reshape(samples, horizon, -1)
    if render is None:
        return None, points
    return np.stack(frames).reshape(samples, horizon, *frames[0].shape), points
