"""Goal-image tasks with the gymnasium API, `make_env` for any environment, policies and data collection.

Importing this package registers "vjepa_world/ReacherGoal-v0" (MuJoCo reacher, 50 steps) and
"vjepa_world/PendulumGoal-v0" (classic-control pendulum, 100 steps). It does not import mujoco:
the reacher settles MUJOCO_GL (see `select_gl_backend`) and imports mujoco when first made.
"""

import gymnasium

from .collect import collect_episodes, rollout
from .pendulum import PendulumGoalEnv
from .policies import POLICIES, make_policy
from .reacher import ReacherGoalEnv, select_gl_backend
from .wrappers import PixelObservation, is_frame_space, make_env, resize_frame

REACHER_ID = "vjepa_world/ReacherGoal-v0"
PENDULUM_ID = "vjepa_world/PendulumGoal-v0"


def register_envs() -> None:
    """Register our environment ids with gymnasium, once (safe to call again)."""
    if REACHER_ID not in gymnasium.registry:
        gymnasium.register(REACHER_ID, "vjepa_world.envs.reacher:ReacherGoalEnv", max_episode_steps=50)
    if PENDULUM_ID not in gymnasium.registry:
        gymnasium.register(PENDULUM_ID, "vjepa_world.envs.pendulum:PendulumGoalEnv", max_episode_steps=100)


register_envs()

__all__ = [
    "PENDULUM_ID",
    "POLICIES",
    "REACHER_ID",
    "PendulumGoalEnv",
    "PixelObservation",
    "ReacherGoalEnv",
    "collect_episodes",
    "is_frame_space",
    "make_env",
    "make_policy",
    "register_envs",
    "resize_frame",
    "rollout",
    "select_gl_backend",
]
