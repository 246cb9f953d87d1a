"""vjepa_world/PendulumGoal-v0: swing gymnasium's classic-control pendulum to an angle shown as a goal image.

Observation: an RGB frame (H, W, 3) uint8 of gymnasium's Pendulum drawing (pygame, rendered at
`render_scale` times `image_size` and area-averaged down, without the torque arrow so a frame shows
only the state). Action: Box(-1, 1, (1,)), the torque as a fraction of Pendulum's max_torque (2).
One step is 0.05 s (20 steps/s).

Angles follow Pendulum: 0 is upright, counter-clockwise positive. Reset samples a start angle
uniformly in [-pi, pi), at rest, and a goal angle the torque can hold still (`goals="holdable"`,
the default): gravity's torque at angle a is 5 sin(a) N m against a 2 N m limit, so only angles with
|sin a| <= HOLDABLE_SIN (0.3, leaving a third of the torque to correct errors) can be held: within
about 0.3 rad of upright or of hanging. `goals="uniform"` samples goals over the whole circle as
earlier versions did; most of those can only be passed through, so success at the end is luck.
The goal is resampled while the start already succeeds; `reset(options={"start": a, "goal": a})`
fixes either. The reset info holds `goal_image`, the pendulum drawn at the goal. Every info holds:

    state           [cos a, sin a, angular velocity] float32 (STATE_DIM = 3, Pendulum's observation)
    angle           a wrapped to [-pi, pi); goal_angle
    fingertip       xy of the pendulum's tip (length 1, upright = (0, 1)); goal_fingertip
    distance        |angle - goal_angle| wrapped to [0, pi] (radians); reward = -distance
    is_success      distance < 0.2 rad (about 11 degrees)

It never terminates; the registered id truncates after 100 steps.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from .simulation import simulate_plans
from .wrappers import resize_frame

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws offscreen: no window, no XDG warning

STATE_DIM = 3
SUCCESS_ANGLE = 0.2  # radians
HOLDABLE_SIN = 0.3  # |sin(goal)| at most this: gravity's torque (5 sin a) within 75% of the 2 N m limit
GOALS = ("holdable", "uniform")


def wrap_angle(angle: float) -> float:
    """An angle in radians mapped to [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _tip(angle: float) -> np.ndarray:
    """xy of the tip of a unit pendulum at `angle` (0 upright, counter-clockwise positive), (2,)."""
    return np.array([-np.sin(angle), np.cos(angle)])


class PendulumGoalEnv(gymnasium.Env):
    """Reach a goal angle given as an image with gymnasium's pendulum (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    state_dim = STATE_DIM

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = None,
        success_angle: float = SUCCESS_ANGLE,
        render_scale: int = 4,
        goals: str = "holdable",
    ) -> None:
        if image_size < 8 or render_scale < 1:
            raise ValueError(f"need image_size >= 8 and render_scale >= 1, got {image_size}, {render_scale}")
        if goals not in GOALS:
            raise ValueError(f"goals must be one of {', '.join(GOALS)}, got {goals!r}")
        self.goals = goals
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self._pendulum = PendulumEnv(render_mode="rgb_array")
        self._pendulum.screen_dim = render_scale * image_size  # draw small: 500 px is twice as slow
        self.image_size, self.render_mode, self.success_angle = image_size, render_mode, success_angle
        self.max_torque = float(self._pendulum.max_torque)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._goal = 0.0

    def _place(self, angle: float, velocity: float = 0.0) -> None:
        self._pendulum.state = np.array([angle, velocity], dtype=np.float64)

    def _render(self) -> np.ndarray:
        """The current frame, (H, W, 3) uint8, without the torque arrow."""
        self._pendulum.last_u = None
        return resize_frame(self._pendulum.render(), self.image_size)

    def _info(self) -> dict[str, Any]:
        angle, velocity = (float(x) for x in self._pendulum.state)
        distance = abs(wrap_angle(angle - self._goal))
        return {
            "state": np.array([np.cos(angle), np.sin(angle), velocity], dtype=np.float32),
            "angle": wrap_angle(angle),
            "goal_angle": wrap_angle(self._goal),
            "fingertip": _tip(angle),
            "goal_fingertip": _tip(self._goal),
            "distance": distance,
            "is_success": distance < self.success_angle,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample start and goal angles (or take options "start"/"goal"); info["goal_image"] shows it."""
        super().reset(seed=seed)
        options = options or {}
        sample = lambda: float(self.np_random.uniform(-np.pi, np.pi))
        start = float(options["start"]) if "start" in options else sample()
        goal = float(options["goal"]) if "goal" in options else self._sample_goal()
        while "goal" not in options and abs(wrap_angle(goal - start)) < self.success_angle:
            goal = self._sample_goal()
        self._goal = goal
        self._place(goal)
        goal_image = self._render()
        self._place(start)
        info = self._info()
        info["goal_image"] = goal_image
        return self._render(), info

    def _sample_goal(self) -> float:
        """A goal angle: uniform over the circle, or over the holdable arcs around upright and hanging."""
        if self.goals == "uniform":
            return float(self.np_random.uniform(-np.pi, np.pi))
        arc = float(np.arcsin(HOLDABLE_SIN))  # half-width of each holdable arc
        centre = 0.0 if self.np_random.random() < 0.5 else np.pi
        return wrap_angle(centre + self.np_random.uniform(-arc, arc))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply a torque in [-1, 1] (times max_torque) for 0.05 s; reward = -angle difference to the goal."""
        torque = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self._pendulum.step(np.array([torque * self.max_torque]))
        info = self._info()
        return self._render(), -info["distance"], False, False, info

    def set_state(self, angle: float, velocity: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
        """Teleport the pendulum to `angle` moving at `velocity`, keeping the goal: (frame, info)."""
        self._place(float(angle), float(velocity))
        return self._render(), self._info()

    def simulate(
        self, actions: np.ndarray, every: int = 1, render: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The true simulator as a world model (as `ReacherGoalEnv.simulate`): play each action
        sequence `(S, H, 1)` from the current state; after every `every`-th step, its frames
        `(S, H // every, image, image, 3)` (None unless `render`) and tips `(S, H // every, 2)`."""

        def restore(state: np.ndarray) -> None:
            self._pendulum.state = state.copy()

        return simulate_plans(
            actions,
            every,
            1,
            save=lambda: self._pendulum.state.copy(),
            restore=restore,
            act=lambda action: self._pendulum.step(action * self.max_torque),
            point=lambda: _tip(float(self._pendulum.state[0])),
            render=self._render if render else None,
        )

    @property
    def _goal_fingertip(self) -> np.ndarray:
        """The goal's tip xy (the true-distance energy of the planning ceiling reads it)."""
        return _tip(self._goal)

    def render(self) -> np.ndarray | None:
        """The current frame (H, W, 3) uint8 when render_mode is "rgb_array", else None."""
        return self._render() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        """Release pygame (gymnasium's Pendulum quits it on close)."""
        self._pendulum.close()
