"""The planning ceiling: the true simulator in place of a learned world model, in the same MPC loop.

`SimulatorWorldModel` has the surface `run_mpc_episode` calls on a `WorldModel` (`encode`,
`observe`, `rollout`, `imagined_states`, `action_dim`, `frame_skip`, `history`, `state_dim`), but
its rollout plays every candidate in the environment's own physics (`env.simulate`, which the
built-in goal tasks provide) from the current state. Prediction error is then zero, and with the
same frame skip, horizon, samples and replanning as a learned model, only the energy differs:

- "fingertip": the distance of the body's tracked point (the reacher's fingertip, the pendulum's
  tip, the point mass) to the goal's (the true state);
- "pixels": the simulated frames against the goal image, as flat vectors in [0, 1];
- "latents": a world model's own latents of the simulated frames against the goal image's.
"""

from __future__ import annotations

import torch
from torch import Tensor

ENERGIES = ("fingertip", "pixels", "latents")


class SimulatorWorldModel:
    """Perfect dynamics for `run_mpc_episode` (see the module docstring)."""

    state_dim = 0
    history = 0  # the simulator's state already holds the velocity

    def __init__(self, env, energy: str, frame_skip: int, world_model=None):
        if energy not in ENERGIES:
            raise ValueError(f"energy must be one of {', '.join(ENERGIES)}, got {energy!r}")
        if energy == "latents" and world_model is None:
            raise ValueError("the latents energy needs the world model whose encoder makes them")
        self.env, self.energy, self.frame_skip, self.world_model = (
            env.unwrapped,
            energy,
            frame_skip,
            world_model,
        )
        self.env_dim = env.action_space.shape[0]
        self.action_dim = frame_skip * self.env_dim

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 frames `(B, H, W, 3)` -> `(B, N, D)` in the energy's space. The fingertip energy
        reads the goal from the environment (`goal_fingertip`), as an image cannot tell it."""
        if self.energy == "fingertip":
            goal = torch.as_tensor(self.env._goal_fingertip, dtype=torch.float32)
            return goal.expand(len(frames), 1, 2).clone()
        if self.energy == "pixels":
            return frames.float().div(255).flatten(1)[:, None]
        return self.world_model.encode(frames)

    def observe(self, latents: Tensor, actions: Tensor, states: Tensor | None = None) -> None:
        return None  # no context needed: the simulator starts from the environment's true state

    @staticmethod
    def imagined_states(current: Tensor | None, horizon: int) -> None:
        return None

    def rollout(self, latents: Tensor, actions: Tensor, states=None, *, history=None) -> Tensor:
        """Action sequences `(S, H, frame_skip * A)` -> the energy's features after each model step
        `(S, H, N, D)`, played in the simulator from the environment's current state."""
        samples, horizon = actions.shape[:2]
        flat = actions.reshape(samples, horizon * self.frame_skip, self.env_dim).numpy()
        frames, tips = self.env.simulate(flat, every=self.frame_skip, render=self.energy != "fingertip")
        if self.energy == "fingertip":
            return torch.as_tensor(tips, dtype=torch.float32)[:, :, None]  # (S, H, 1, 2)
        return self.encode(torch.as_tensor(frames).flatten(0, 1)).unflatten(0, (samples, horizon))
