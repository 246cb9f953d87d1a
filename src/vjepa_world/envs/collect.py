"""Roll a data-collection policy in an environment and hand back `Episode`s for a world-model dataset.

Row t of an episode is the observation at step t (frame, info["state"]) and the action taken there;
rewards[t] and dones[t] are that action's outcome. dones marks true termination only: an episode
cut short by the time limit (or reaching `steps`) ends with dones False. An environment that
terminates or truncates before `steps` gives a shorter episode; the final observation after the
last action is not stored.

Episode i resets the environment and seeds the policy with seed + i, so a collection is exactly
reproducible, and so is every goal: `make_env(spec).reset(seed=seed + i)` shows episode i's goal
image again (info["goal_image"]) for planning later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from tqdm.auto import tqdm

from ..data.episodes import Episode, LeRobotDataset, write_lerobot_dataset
from ..files import write_json
from .policies import DEFAULT_POLICY, POLICIES, Policy, make_policy
from .wrappers import make_env

# what `collect` gathers: a frame-only world model (no info["state"]) plans the reacher at 96-98%
# (three training seeds) from 1,600 episodes, 56% from 400 (docs/results.md, issue 13)
DEFAULT_EPISODES = 1600


def _frame(observation: Any) -> np.ndarray:
    """The RGB frame (H, W, 3) uint8 of an observation (the "pixels" entry of a dict)."""
    return np.asarray(observation["pixels"] if isinstance(observation, dict) else observation, np.uint8)


def _state(info: dict[str, Any]) -> np.ndarray:
    """info["state"] as a float32 vector (S,); (0,) when the env gives no state."""
    return np.asarray(info.get("state", ()), dtype=np.float32).reshape(-1)


def rollout(env: gymnasium.Env, policy: Policy, seed: int, steps: int, fps: float, task: str) -> Episode:
    """One episode of at most `steps` steps from env.reset(seed=seed), acting with `policy`."""
    observation, info = env.reset(seed=seed)
    frames, actions, states, rewards, dones = [], [], [], [], []
    for _ in range(steps):
        action = np.asarray(policy(observation, info), dtype=np.float32).reshape(env.action_space.shape)
        frames.append(_frame(observation))
        states.append(_state(info))
        actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        dones.append(bool(terminated))
        if terminated or truncated:
            break
    return Episode(
        frames=np.stack(frames),  # (T, H, W, 3) uint8
        actions=np.stack(actions).reshape(len(actions), -1),  # (T, A) float32
        states=np.stack(states),  # (T, S) float32
        rewards=np.asarray(rewards, dtype=np.float32),  # (T,)
        dones=np.asarray(dones, dtype=bool),  # (T,)
        fps=fps,
        task=task,
    )


def _collect(
    env_spec: str, episodes: int, steps: int | None, policy: str, seed: int, image_size: int, progress: bool
) -> Iterator[Episode]:
    env = make_env(env_spec, image_size=image_size)
    steps = steps or getattr(env.spec, "max_episode_steps", None) or 50  # whole episodes by default
    try:
        fps = float(env.metadata.get("render_fps") or 10.0)
        for i in tqdm(range(episodes), desc=f"collect {env_spec}", unit="episode", disable=not progress):
            policy_i = make_policy(policy, env.action_space, seed + i)
            yield rollout(env, policy_i, seed + i, steps, fps, env_spec)
    finally:
        env.close()


def collect_episodes(
    env_spec: str,
    episodes: int,
    steps: int | None = None,
    policy: str = DEFAULT_POLICY,
    seed: int = 0,
    image_size: int = 64,
    progress: bool = True,
) -> Iterator[Episode]:
    """Yield `episodes` Episodes of up to `steps` steps (default: the environment's time limit, else
    50) of `policy` in `env_spec`; episode i uses seed + i."""
    if episodes < 0 or (steps is not None and steps < 1):
        raise ValueError(f"episodes must be >= 0 and steps >= 1, got {episodes} and {steps}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    return _collect(env_spec, episodes, steps, policy, seed, image_size, progress)


def collect_dataset(
    env_spec: str,
    out: str | os.PathLike,
    episodes: int,
    steps: int | None = None,
    *,
    policy: str = DEFAULT_POLICY,
    seed: int = 0,
    image_size: int = 64,
    progress: bool = True,
) -> dict:
    """`vjepa-world collect`: `collect_episodes`, written as a LeRobot v2 dataset into `out`, with
    `summary.json` (episodes, frames, seconds, settings). Returns the summary."""
    started = time.perf_counter()
    episodes_iter = collect_episodes(env_spec, episodes, steps, policy, seed, image_size, progress)
    out = write_lerobot_dataset(out, episodes_iter, progress=False)
    dataset = LeRobotDataset(out, state_key=None)
    summary = {
        "episodes": len(dataset),
        "frames": sum(dataset.lengths.values()),
        "seconds": round(time.perf_counter() - started, 2),
        "settings": {
            "env": env_spec,
            "episodes": episodes,
            "steps": steps,
            "policy": policy,
            "seed": seed,
            "image_size": image_size,
        },
    }
    write_json(Path(out) / "summary.json", summary)
    return summary
