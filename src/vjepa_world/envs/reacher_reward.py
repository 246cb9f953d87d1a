"""vjepa_world/ReacherReward-v0: reach a target drawn in the frame, rewarded as dm_control's reacher_easy.

The same two-link arm, camera and physics as `ReacherGoalEnv`, but the goal is a red disc in the
frame instead of a goal image, and the task gives a sparse reward (dm_control's reacher rule at its
"easy" target size): 1 while the fingertip is within `TARGET_SIZE` + `FINGER_SIZE` = 0.06 m of the
target's centre, else 0. There is no goal image (`info["goal_image"]` is None): a world model
plans or learns a policy from predicted rewards.

Reset places the arm at a random pose at rest (shoulder uniform in [-pi, pi), elbow uniform in its
range) and the target at a uniform angle and a radius uniform in [0.05, 0.20] m from the base
(reacher_easy's sampling); the pose is resampled while the fingertip already touches the target,
so no episode starts rewarded. `reset(options={"start": q, "target": xy})` fixes either.

The noisy variant (vjepa_world/ReacherRewardNoisy-v0) makes the future uncertain given the
frames: a random torque disturbance N(0, `disturbance`^2) is added to every action (before the
[-1, 1] clip), and with probability `target_jump` per step the target jumps to a freshly sampled
place before the arm moves. Every info holds `state` (the arm's, as ReacherGoal: [cos q, sin q,
dq]), `fingertip`, `target`, `distance` (fingertip to target centre, metres) and `is_success`
(reward 1 now).
It never terminates; the registered ids truncate after 100 steps (2 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reacher import ReacherGoalEnv, _mujoco

TARGET_SIZE = 0.05  # dm_control reacher_easy's target radius (_BIG_TARGET)
FINGER_SIZE = 0.01  # the modelled fingertip radius (dm_control adds it: the surfaces touch)
TARGET_RADII = (0.05, 0.20)  # distance of the target from the base, uniform (reacher_easy)
NOISY = {"disturbance": 0.3, "target_jump": 0.05}  # the registered noisy variant's settings


class ReacherRewardEnv(ReacherGoalEnv):
    """Touch a target shown in the frame; reward 1 inside it, else 0 (see the module docstring)."""

    def __init__(
        self,
        image_size: int = 64,
        frame_skip: int = 2,
        render_mode: str | None = None,
        disturbance: float = 0.0,
        target_jump: float = 0.0,
        **camera: Any,
    ) -> None:
        if disturbance < 0 or not 0 <= target_jump <= 1:
            raise ValueError(
                f"need disturbance >= 0 and 0 <= target_jump <= 1, got {disturbance} and {target_jump}"
            )
        super().__init__(image_size, frame_skip, render_mode, TARGET_SIZE + FINGER_SIZE, **camera)
        target = self.model.geom("target").id
        self.model.geom_rgba[target] = (0.9, 0.2, 0.2, 1.0)  # shown again, at its true size
        self.model.geom_size[target, 0] = TARGET_SIZE
        self.disturbance, self.target_jump = disturbance, target_jump
        self._target = np.zeros(2)

    def _sample_target(self) -> np.ndarray:
        angle, radius = self.np_random.uniform(0, 2 * np.pi), self.np_random.uniform(*TARGET_RADII)
        return radius * np.array([np.sin(angle), np.cos(angle)])

    def _place(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """The arm at qpos moving at qvel; the target body moved to `self._target` (at rest)."""
        self.data.qpos[:] = 0.0
        self.data.qvel[:] = 0.0
        self.data.qpos[:2], self.data.qvel[:2] = qpos, qvel
        self.data.qpos[2:4] = self._target - self.model.body_pos[self.model.body("target").id, :2]
        self.data.qpos[2:4] += self.model.qpos0[2:4]  # slide joints measure from their reference
        self.data.ctrl[:] = 0.0
        _mujoco().mj_forward(self.model, self.data)

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        for key in ("goal_qpos", "goal_fingertip"):
            info.pop(key)
        distance = float(np.linalg.norm(info["fingertip"] - self._target))
        inside = distance < self.success_radius
        return {**info, "target": self._target.copy(), "distance": distance, "is_success": inside}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A random pose at rest and a random target (or options "start" / "target"); no goal image."""
        super(ReacherGoalEnv, self).reset(seed=seed)
        options = options or {}
        self._target = np.asarray(options["target"], float) if "target" in options else self._sample_target()
        start = np.asarray(options["start"], float) if "start" in options else self._sample_pose()
        self._place(start, np.zeros(2))
        while "start" not in options and self._info()["is_success"]:
            start = self._sample_pose()
            self._place(start, np.zeros(2))
        return self._render(), {**self._info(), "goal_image": None}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Joint torques (2,) in [-1, 1] (plus the disturbance) for frame_skip physics steps; reward
        1 if the fingertip is then inside the target, else 0. The target may jump first."""
        if self.target_jump and self.np_random.random() < self.target_jump:
            self._target = self._sample_target()
            self._place(self.data.qpos[:2].copy(), self.data.qvel[:2].copy())
        torque = np.asarray(action, dtype=np.float64).reshape(2)
        if self.disturbance:
            torque = torque + self.np_random.normal(0.0, self.disturbance, 2)
        self.data.ctrl[:] = np.clip(torque, -1.0, 1.0)
        _mujoco().mj_step(self.model, self.data, nstep=self.frame_skip)
        info = self._info()
        return self._render(), float(info["is_success"]), False, False, info
