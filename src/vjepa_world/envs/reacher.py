"""vjepa_world/ReacherGoal-v0: move MuJoCo's two-link reacher arm to a pose shown as a goal image.

Observation: an RGB frame (H, W, 3) uint8, H = W = `image_size`, from a fixed top-down camera
(world x to the right, y up, the arm's reach fills the frame; `camera_elevation` and
`camera_azimuth` in degrees tilt and turn it, e.g. -50 for an oblique view). The red target
sphere of Reacher-v5 is hidden (alpha 0): the goal exists only as an image. The links and
fingertip are drawn `arm_width` (3) times thicker than modelled, about 4 px at 64 px instead of
1 (they have no contacts and their inertia is fixed when the model compiles, so the physics are Reacher-v5's).
Action: Box(-1, 1, (2,)) joint torques (gear 200, as Reacher-v5), each held for `frame_skip` = 2
physics steps of 0.01 s (50 steps/s).

Reset samples a start and a goal joint configuration, both at rest: shoulder uniform in
[-pi, pi), elbow uniform in its joint range [-3, 3]; the goal is resampled while the start already
succeeds, so no episode starts solved. `reset(options={"start": q, "goal": q})` fixes either.
The reset info holds `goal_image`, the arm rendered at the goal. Every info holds:

    state           [cos q0, cos q1, sin q0, sin q1, dq0, dq1] float32 (STATE_DIM = 6, Reacher-v5's order)
    qpos, qvel      the two arm joints, raw (float64 (2,)); goal_qpos the goal's
    fingertip       fingertip xy now; goal_fingertip at the goal configuration
    distance        between the two (metres); reward = -distance
    is_success      distance < 0.05 (dm_control's "easy" radius)

It never terminates; the registered id truncates after 50 steps.

MuJoCo picks its OpenGL backend once, when it is imported, from MUJOCO_GL. `select_gl_backend`
settles the variable first: the user's value if set, else "egl" if an EGL renderer works here
(tried in a subprocess, since the choice cannot be undone in this one), else "osmesa". This module
imports mujoco only after that, when the first environment is made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from .simulation import simulate_plans

STATE_DIM = 6
SUCCESS_RADIUS = 0.05  # metres between fingertip and goal fingertip
CAMERA_DISTANCE = 0.6  # metres above the arena: with MuJoCo's 45 degree fov the frame spans +-0.25 m
ARM_WIDTH = 3.0  # drawn thickness of the links and fingertip, times Reacher-v5's (1 cm radius: ~1 px)

_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
with mujoco.Renderer(model, 8, 8) as renderer:
    renderer.update_scene(mujoco.MjData(model))
    renderer.render()
"""


def _renders_with(backend: str) -> bool:
    """Whether a MuJoCo renderer works with MUJOCO_GL=backend, tried in a fresh Python process."""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def select_gl_backend() -> str:
    """Set MUJOCO_GL before mujoco is imported: the user's, else egl if it renders, else osmesa."""
    chosen = os.environ.get("MUJOCO_GL", "")
    if chosen or "mujoco" in sys.modules:  # the user decided, or it is too late to decide
        return chosen
    chosen = "egl" if _renders_with("egl") else "osmesa"
    os.environ["MUJOCO_GL"] = chosen  # child processes inherit it and skip the probe
    return chosen


def _mujoco() -> Any:
    """The mujoco module, imported only once MUJOCO_GL is settled."""
    select_gl_backend()
    import mujoco

    return mujoco


def reacher_xml() -> Path:
    """Path of gymnasium's Reacher-v5 model file (the installed package's assets/reacher.xml)."""
    return Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "reacher.xml"


def _make_renderer(model: Any, size: int) -> Any:
    """A fast offscreen renderer (no shadows, reflections or multisampling); a one-line hint on failure."""
    mujoco = _mujoco()
    model.vis.quality.offsamples = 0  # must precede the renderer: it sizes the offscreen buffer
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
    model.vis.global_.offheight = max(model.vis.global_.offheight, size)
    try:
        renderer = mujoco.Renderer(model, size, size)
    except Exception as err:
        raise RuntimeError(
            f"MuJoCo cannot render with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r} ({err}); set "
            "MUJOCO_GL=egl or osmesa before anything imports mujoco"
        ) from err
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    return renderer


def _free_camera(distance: float, elevation: float = -90.0, azimuth: float = 90.0) -> Any:
    """A free camera aimed at the arena's centre; by default straight down, x to the right and y up."""
    mujoco = _mujoco()
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = 0.0
    camera.distance, camera.azimuth, camera.elevation = distance, azimuth, elevation
    return camera


class ReacherGoalEnv(gymnasium.Env):
    """Reach a goal pose given as an image with the two-link reacher arm (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50.0}
    state_dim = STATE_DIM

    def __init__(
        self,
        image_size: int = 64,
        frame_skip: int = 2,
        render_mode: str | None = None,
        success_radius: float = SUCCESS_RADIUS,
        camera_distance: float = CAMERA_DISTANCE,
        arm_width: float = ARM_WIDTH,
        camera_elevation: float = -90.0,
        camera_azimuth: float = 90.0,
    ) -> None:
        if image_size < 8 or frame_skip < 1:
            raise ValueError(f"image_size must be >= 8 and frame_skip >= 1, got {image_size}, {frame_skip}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        mujoco = _mujoco()
        self.model = mujoco.MjModel.from_xml_path(str(reacher_xml()))
        self.model.geom_rgba[self.model.geom("target").id, 3] = 0.0  # hide the target: goals are images
        for name in ("link0", "link1", "fingertip"):  # drawn only: no contacts, inertia fixed at compile
            self.model.geom_size[self.model.geom(name).id, 0] *= arm_width
        self.data = mujoco.MjData(self.model)
        self.image_size, self.frame_skip, self.render_mode = image_size, frame_skip, render_mode
        self.success_radius = success_radius
        self.dt = float(self.model.opt.timestep) * frame_skip
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dt}
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._elbow_range = self.model.jnt_range[1].copy()  # (2,) low, high
        self._fingertip_id = self.model.body("fingertip").id
        self._camera = _free_camera(camera_distance, camera_elevation, camera_azimuth)
        self._renderer = _make_renderer(self.model, image_size)
        self._goal_qpos = np.zeros(2)
        self._goal_fingertip = np.zeros(2)

    # ------------------------------------------------------------------ simulator helpers

    def _place(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put the arm at joint angles qpos (2,) moving at qvel (2,); the hidden target stays at rest."""
        self.data.qpos[:] = 0.0
        self.data.qvel[:] = 0.0
        self.data.qpos[:2], self.data.qvel[:2] = qpos, qvel
        self.data.ctrl[:] = 0.0
        _mujoco().mj_forward(self.model, self.data)

    def _fingertip(self) -> np.ndarray:
        return self.data.xpos[self._fingertip_id, :2].copy()  # (2,) xy

    def _render(self) -> np.ndarray:
        """The current frame, (H, W, 3) uint8, a fresh array."""
        self._renderer.update_scene(self.data, self._camera)
        return self._renderer.render()

    def _sample_pose(self) -> np.ndarray:
        """Uniform joint angles at which the arm can sit: shoulder in [-pi, pi), elbow in its range."""
        low, high = self._elbow_range
        return np.array([self.np_random.uniform(-np.pi, np.pi), self.np_random.uniform(low, high)])

    def _info(self) -> dict[str, Any]:
        qpos, qvel = self.data.qpos[:2].copy(), self.data.qvel[:2].copy()
        fingertip = self._fingertip()
        distance = float(np.linalg.norm(fingertip - self._goal_fingertip))
        state = np.concatenate([np.cos(qpos), np.sin(qpos), qvel]).astype(np.float32)  # (6,)
        return {
            "state": state,
            "qpos": qpos,
            "qvel": qvel,
            "goal_qpos": self._goal_qpos.copy(),
            "fingertip": fingertip,
            "goal_fingertip": self._goal_fingertip.copy(),
            "distance": distance,
            "is_success": distance < self.success_radius,
        }

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample start and goal poses (or take options "start"/"goal"); info["goal_image"] shows the goal."""
        super().reset(seed=seed)
        options = options or {}
        start = np.asarray(options["start"], float) if "start" in options else self._sample_pose()
        self._place(start, np.zeros(2))
        start_tip = self._fingertip()
        goal = np.asarray(options["goal"], float) if "goal" in options else self._sample_pose()
        self._place(goal, np.zeros(2))
        while "goal" not in options and np.linalg.norm(self._fingertip() - start_tip) < self.success_radius:
            goal = self._sample_pose()
            self._place(goal, np.zeros(2))
        self._goal_qpos, self._goal_fingertip = goal, self._fingertip()
        goal_image = self._render()  # (H, W, 3)
        self._place(start, np.zeros(2))
        info = self._info()
        info["goal_image"] = goal_image
        return self._render(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply joint torques (2,) in [-1, 1] for frame_skip physics steps; reward = -distance to goal."""
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        _mujoco().mj_step(self.model, self.data, nstep=self.frame_skip)
        info = self._info()
        return self._render(), -info["distance"], False, False, info

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """Teleport the arm to joint angles qpos (2,) moving at qvel (default 0), keeping the goal."""
        velocity = np.zeros(2) if qvel is None else np.asarray(qvel, float).reshape(2)
        self._place(np.asarray(qpos, float).reshape(2), velocity)
        return self._render(), self._info()

    def simulate(
        self, actions: np.ndarray, every: int = 1, render: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The true simulator as a world model: from the current state, play each action sequence
        `(S, H, 2)` and return, after every `every`-th step, its frames `(S, H // every, image,
        image, 3)` (None unless `render`) and fingertips `(S, H // every, 2)`; the environment's own
        state is restored (planning with it gives the ceiling a learned model could reach)."""
        mujoco = _mujoco()

        def act(action: np.ndarray) -> None:
            self.data.ctrl[:] = action
            mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)

        def restore(state: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
            self.data.qpos[:], self.data.qvel[:], self.data.ctrl[:] = state
            mujoco.mj_forward(self.model, self.data)

        return simulate_plans(
            actions,
            every,
            2,
            save=lambda: (self.data.qpos.copy(), self.data.qvel.copy(), self.data.ctrl.copy()),
            restore=restore,
            act=act,
            point=self._fingertip,
            render=self._render if render else None,
        )

    def render(self) -> np.ndarray | None:
        """The current frame (H, W, 3) uint8 when render_mode is "rgb_array", else None."""
        return self._render() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        """Free the renderer's OpenGL context (safe to call twice)."""
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
