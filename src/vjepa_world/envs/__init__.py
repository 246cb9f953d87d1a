"""Goal-image tasks with the gymnasium API, `make_env` for any environment, policies and data collection.

Importing this package registers "vjepa_world/ReacherGoal-v0" (MuJoCo reacher, 50 steps),
"vjepa_world/PendulumGoal-v0" (classic-control pendulum, 100 steps),
"vjepa_world/PointMassGoal-v0" (a damped point mass in a room, 50 steps),
"vjepa_world/TwoRoomsGoal-v0" (the same in two rooms joined by a door, 100 steps), and the reward
tasks "vjepa_world/ReacherReward-v0" (touch a target drawn in the frame, dm_control reacher_easy's
reward, 100 steps) and "vjepa_world/ReacherRewardNoisy-v0" (the same with torque disturbances and
a target that jumps). It does not import mujoco:
the reacher settles MUJOCO_GL (see `select_gl_backend`) and imports mujoco when first made.
"""

import gymnasium

from .collect import DEFAULT_EPISODES, collect_dataset, collect_episodes, rollout
from .pendulum import PendulumGoalEnv
from .point_mass import PointMassGoalEnv
from .policies import DEFAULT_POLICY, POLICIES, make_policy
from .reacher import ReacherGoalEnv, select_gl_backend
from .reacher_reward import NOISY, ReacherRewardEnv
from .wrappers import PixelObservation, is_frame_space, make_env, resize_frame

REACHER_ID = "vjepa_world/ReacherGoal-v0"
PENDULUM_ID = "vjepa_world/PendulumGoal-v0"
POINT_MASS_ID = "vjepa_world/PointMassGoal-v0"
TWO_ROOMS_ID = "vjepa_world/TwoRoomsGoal-v0"
REACHER_REWARD_ID = "vjepa_world/ReacherReward-v0"
REACHER_NOISY_ID = "vjepa_world/ReacherRewardNoisy-v0"


def register_envs() -> None:
    """Register our environment ids with gymnasium, once (safe to call again)."""
    if REACHER_ID not in gymnasium.registry:
        gymnasium.register(REACHER_ID, "vjepa_world.envs.reacher:ReacherGoalEnv", max_episode_steps=50)
    if PENDULUM_ID not in gymnasium.registry:
        gymnasium.register(PENDULUM_ID, "vjepa_world.envs.pendulum:PendulumGoalEnv", max_episode_steps=100)
    if POINT_MASS_ID not in gymnasium.registry:
        gymnasium.register(
            POINT_MASS_ID, "vjepa_world.envs.point_mass:PointMassGoalEnv", max_episode_steps=50
        )
    if TWO_ROOMS_ID not in gymnasium.registry:
        gymnasium.register(
            TWO_ROOMS_ID,
            "vjepa_world.envs.point_mass:PointMassGoalEnv",
            max_episode_steps=100,
            kwargs={"layout": "two_rooms"},
        )
    reward = "vjepa_world.envs.reacher_reward:ReacherRewardEnv"
    if REACHER_REWARD_ID not in gymnasium.registry:
        gymnasium.register(REACHER_REWARD_ID, reward, max_episode_steps=100)
    if REACHER_NOISY_ID not in gymnasium.registry:
        gymnasium.register(REACHER_NOISY_ID, reward, max_episode_steps=100, kwargs=NOISY)


register_envs()

__all__ = [
    "DEFAULT_EPISODES",
    "DEFAULT_POLICY",
    "PENDULUM_ID",
    "POINT_MASS_ID",
    "POLICIES",
    "REACHER_ID",
    "REACHER_NOISY_ID",
    "REACHER_REWARD_ID",
    "TWO_ROOMS_ID",
    "PendulumGoalEnv",
    "PixelObservation",
    "PointMassGoalEnv",
    "ReacherGoalEnv",
    "ReacherRewardEnv",
    "collect_dataset",
    "collect_episodes",
    "is_frame_space",
    "make_env",
    "make_policy",
    "register_envs",
    "resize_frame",
    "rollout",
    "select_gl_backend",
]
