"""Trajectory data for action-conditioned world models: episodes of frames, actions and states."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Episode:
    """One trajectory of T steps, row t = what was observed at step t and the action taken there
    (the LeRobot convention: `next.reward` and `next.done` are the outcome of `actions[t]`)."""

    frames: np.ndarray  # (T, H, W, 3) uint8, observation.image
    actions: np.ndarray  # (T, A) float32
    states: np.ndarray  # (T, S) float32, observation.state
    rewards: np.ndarray  # (T,) float32, next.reward
    dones: np.ndarray  # (T,) bool, next.done
    fps: float = 10.0
    task: str = ""

    def __len__(self) -> int:
        return len(self.actions)
