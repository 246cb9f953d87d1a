"""vjepa_world/PointMassGoal-v0: push a point mass across a room to a place shown as a goal image.

A third body for the goal-image pipeline, unlike the other two: nothing moves unless pushed, the
state is a position (not an angle), and with `layout="two_rooms"` a wall with a door sits between
many starts and their goals, so the straight line is not the way.

Observation: an RGB frame (H, W, 3) uint8 looking straight down on the room [-1, 1]^2 (x to the
right, y up): a tiled floor, dark walls, the mass a blue disc of radius `RADIUS`. Drawn with
NumPy at 4x and area-averaged down, so the disc moves smoothly between pixels.
Action: Box(-1, 1, (2,)), a force along x and y. The mass is damped:
    v <- v + DT (FORCE a - DAMPING v),   x <- x + DT v
so a held push reaches the terminal speed FORCE / DAMPING = 1.5 units/s (0.075 units a step, the
room's 2 units in ~27 steps) after a few steps. Walls stop the mass (the velocity into them is
zeroed). One step is DT = 0.05 s (20 steps/s).

Reset samples the start and the goal uniformly over the free floor, both at rest, the goal at least
the success radius away; `reset(options={"start": xy, "goal": xy})` fixes either. The reset info
holds `goal_image`, the room with the mass at the goal. Every info holds:

    state           [x, y, vx, vy] float32 (STATE_DIM = 4)
    position        xy now; goal_position
    distance        straight-line distance to the goal; reward = -distance
    is_success      distance < SUCCESS_RADIUS (0.1: half the disc's diameter past touching)

It never terminates; the registered id truncates after 50 steps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from .simulation import simulate_plans

STATE_DIM = 4
DT = 0.05  # seconds per step
FORCE = 6.0  # units/s^2 at full push
DAMPING = 4.0  # 1/s: terminal speed FORCE / DAMPING = 1.5 units/s
RADIUS = 0.08  # the mass's radius (room units; the room spans 2)
SUCCESS_RADIUS = 0.1
WALL = 0.06  # half-thickness of the middle wall of "two_rooms"
DOOR = 0.3  # half-height of its door, centred at y = 0
LAYOUTS = ("room", "two_rooms")
SUPERSAMPLE = 4  # drawn at 4x the image size, then area-averaged

FLOOR, TILE, WALL_COLOUR, MASS = (
    np.array([225, 220, 205]),
    np.array([200, 195, 180]),
    np.array([70, 70, 80]),
    np.array([40, 90, 220]),
)


class PointMassGoalEnv(gymnasium.Env):
    """Push a damped point mass to a goal position given as an image (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 1.0 / DT}
    state_dim = STATE_DIM

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = None,
        layout: str = "room",
        success_radius: float = SUCCESS_RADIUS,
    ) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size, self.render_mode, self.layout = image_size, render_mode, layout
        self.success_radius = success_radius
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        side = image_size * SUPERSAMPLE
        centres = (np.arange(side) + 0.5) / side * 2.0 - 1.0  # pixel centres in room units
        self._x, self._y = np.meshgrid(centres, centres[::-1])  # (side, side): row 0 is the top (y = 1)
        self._background = self._draw_room()
        self._position, self._velocity, self._goal = np.zeros(2), np.zeros(2), np.zeros(2)

    # ------------------------------------------------------------------ geometry

    def _in_wall(self, position: np.ndarray) -> bool:
        """Whether the mass at `position` (2,) overlaps the middle wall (outside its door)."""
        x, y = position
        return self.layout == "two_rooms" and abs(x) < WALL + RADIUS and abs(y) > DOOR - RADIUS

    def _free(self, position: np.ndarray) -> bool:
        return bool(np.all(np.abs(position) <= 1.0 - RADIUS)) and not self._in_wall(position)

    def _sample_free(self) -> np.ndarray:
        while True:
            position = self.np_random.uniform(-1.0 + RADIUS, 1.0 - RADIUS, size=2)
            if self._free(position):
                return position

    def _move(self, velocity: np.ndarray) -> None:
        """Advance one step at `velocity`, each axis stopped where it would leave the free floor."""
        position = self._position.copy()
        for axis in (0, 1):  # axis by axis: sliding along a wall keeps the other component
            trial = position.copy()
            trial[axis] += DT * velocity[axis]
            trial[axis] = np.clip(trial[axis], -1.0 + RADIUS, 1.0 - RADIUS)
            if self._in_wall(trial):
                trial[axis] = position[axis]
            if trial[axis] != position[axis] + DT * velocity[axis]:
                velocity[axis] = 0.0  # hit a wall
            position = trial
        self._position, self._velocity = position, velocity

    # ------------------------------------------------------------------ drawing

    def _draw_room(self) -> np.ndarray:
        """The empty room at SUPERSAMPLE x the image size, (side, side, 3) float."""
        tiles = ((np.floor(self._x * 4) + np.floor(self._y * 4)) % 2 == 0)[..., None]
        image = np.where(tiles, TILE, FLOOR).astype(np.float64)
        border = 1.0 - 0.02
        walls = (np.abs(self._x) > border) | (np.abs(self._y) > border)
        if self.layout == "two_rooms":
            walls |= (np.abs(self._x) < WALL) & (np.abs(self._y) > DOOR)
        image[walls] = WALL_COLOUR
        return image

    def _draw(self, position: np.ndarray) -> np.ndarray:
        """The room with the mass at `position`, (H, W, 3) uint8."""
        image = self._background.copy()
        disc = (self._x - position[0]) ** 2 + (self._y - position[1]) ** 2 <= RADIUS**2
        image[disc] = MASS
        size, s = self.image_size, SUPERSAMPLE
        return image.reshape(size, s, size, s, 3).mean(axis=(1, 3)).round().astype(np.uint8)

    # ------------------------------------------------------------------ gymnasium API

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self._position - self._goal))
        return {
            "state": np.concatenate([self._position, self._velocity]).astype(np.float32),
            "position": self._position.copy(),
            "goal_position": self._goal.copy(),
            "distance": distance,
            "is_success": distance < self.success_radius,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample start and goal positions (or take options "start"/"goal"); info["goal_image"] shows it."""
        super().reset(seed=seed)
        options = options or {}
        start = np.asarray(options["start"], float) if "start" in options else self._sample_free()
        goal = np.asarray(options["goal"], float) if "goal" in options else self._sample_free()
        while "goal" not in options and np.linalg.norm(goal - start) < self.success_radius:
            goal = self._sample_free()
        for name, position in (("start", start), ("goal", goal)):
            if not self._free(position):
                raise ValueError(
                    f"{name} {position.tolist()} is not on the free floor of the {self.layout!r} layout"
                )
        self._position, self._velocity, self._goal = start, np.zeros(2), goal
        info = self._info()
        info["goal_image"] = self._draw(goal)
        return self._draw(start), info

    def _push(self, action: np.ndarray) -> None:
        force = FORCE * np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._move(self._velocity + DT * (force - DAMPING * self._velocity))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Push with force `action` (2,) in [-1, 1] for DT; reward = -distance to the goal."""
        self._push(action)
        info = self._info()
        return self._draw(self._position), -info["distance"], False, False, info

    def set_state(self, position: np.ndarray, velocity: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """Teleport the mass to `position` (2,) moving at `velocity` (default 0), keeping the goal."""
        self._position = np.asarray(position, float).reshape(2)
        self._velocity = np.zeros(2) if velocity is None else np.asarray(velocity, float).reshape(2)
        return self._draw(self._position), self._info()

    def simulate(
        self, actions: np.ndarray, every: int = 1, render: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The true simulator as a world model (as `ReacherGoalEnv.simulate`): play each action
        sequence `(S, H, 2)` from the current state; after every `every`-th step, its frames
        `(S, H // every, image, image, 3)` (None unless `render`) and positions `(S, H // every, 2)`."""

        def restore(state: tuple[np.ndarray, np.ndarray]) -> None:
            self._position, self._velocity = state[0].copy(), state[1].copy()

        return simulate_plans(
            actions,
            every,
            2,
            save=lambda: (self._position.copy(), self._velocity.copy()),
            restore=restore,
            act=self._push,
            point=lambda: self._position.copy(),
            render=(lambda: self._draw(self._position)) if render else None,
        )

    @property
    def _goal_fingertip(self) -> np.ndarray:
        """The goal position (the true-distance energy of the planning ceiling reads it)."""
        return self._goal.copy()

    def render(self) -> np.ndarray | None:
        """The current frame (H, W, 3) uint8 when render_mode is "rgb_array", else None."""
        return self._draw(self._position) if self.render_mode == "rgb_array" else None
