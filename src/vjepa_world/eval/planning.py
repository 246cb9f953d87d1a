"""Closed-loop evaluation of goal-image planning: MPC episodes against a random policy, with videos.

Episode i resets the environment with seed `seed + i` for both the planner and the random
baseline, so both face the same start and goal. Writes into `out`: `episode_XXX.mp4` (observation
beside the goal image, upscaled to a visible size), `energy_by_iteration.png`,
`distance_over_time.png` (when the environment reports `info["distance"]`) and `summary.json`.
An episode succeeds when `info["is_success"]` holds at its end (arrived and stayed); `reached_rate`
also counts episodes that passed within the radius at some step, which random flailing often does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.video import write_video
from ..envs import make_env
from ..files import write_json
from ..planning import (
    EpisodeResult,
    PlannerConfig,
    resolve_objective,
    run_mpc_episode,
    run_random_episode,
    seconds_per_action,
)
from ..viz import plot_distance_over_time, plot_energy_by_iteration


def side_by_side(result: EpisodeResult, min_height: int = 256) -> np.ndarray:
    """Frames `(T, s*H, 2*s*W, 3)`: each observation with the goal image to its right (alone when
    the task has none), upscaled by a whole factor s (nearest neighbour, so pixels stay sharp) to
    at least `min_height` rows."""
    frames = result.frames
    if result.goal_image is not None:
        frames = np.concatenate([frames, np.broadcast_to(result.goal_image, frames.shape)], axis=2)
    scale = max(1, -(-min_height // frames.shape[1]))
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def evaluate_planning(
    env_spec: str,
    world_model,
    config: PlannerConfig,
    out: str | Path,
    *,
    episodes: int = 10,
    seed: int = 10_000,
    image_size: int = 64,
    max_steps: int | None = None,
    videos: int | None = None,
    progress: bool = True,
) -> dict:
    """Run `episodes` planned and random episodes of `env_spec`; write videos, plot and summary."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = resolve_objective(world_model, config)  # the summary records the objective planned with
    env = make_env(env_spec, image_size=image_size)
    limit = max_steps or getattr(env.spec, "max_episode_steps", None) or 50
    fps = float(env.metadata.get("render_fps") or 10.0)
    planned, random = [], []
    started = time.perf_counter()
    bar = tqdm(range(episodes), desc=f"plan {env_spec}", unit="episode", disable=not progress)
    try:
        for i in bar:
            result = run_mpc_episode(env, world_model, config, seed=seed + i, max_steps=limit)
            planned.append(result)
            random.append(run_random_episode(env, seed=seed + i, max_steps=limit))
            if videos is None or i < videos:
                write_video(out / f"episode_{i:03d}.mp4", side_by_side(result), fps=fps)
            bar.set_postfix(success=f"{np.mean([r.success for r in planned]):.0%}")
    finally:
        env.close()
    plot_energy_by_iteration([e for r in planned for e in r.energies], out / "energy_by_iteration.png")
    if planned[0].distances:
        radius = getattr(env.unwrapped, "success_radius", None) or getattr(
            env.unwrapped, "success_angle", None
        )
        plot_distance_over_time(
            [r.distances for r in planned],
            [r.distances for r in random],
            out / "distance_over_time.png",
            radius,
        )
    summary = {
        "env": env_spec,
        "episodes": episodes,
        "max_steps": limit,
        "success_rate": float(np.mean([r.success for r in planned])),
        "random_success_rate": float(np.mean([r.success for r in random])),
        "reached_rate": float(np.mean([r.reached for r in planned])),  # within the radius at any step
        "random_reached_rate": float(np.mean([r.reached for r in random])),
        "final_distance": _mean([r.final_distance for r in planned]),
        "random_final_distance": _mean([r.final_distance for r in random]),
        "return": float(np.mean([r.episode_return for r in planned])),  # the environment's rewards
        "random_return": float(np.mean([r.episode_return for r in random])),
        "seconds_per_action": seconds_per_action(planned),
        "seconds": round(time.perf_counter() - started, 2),
        "settings": dataclasses.asdict(config),
        "per_episode": [
            {
                "seed": seed + i,
                "success": p.success,
                "reached": p.reached,
                "final_distance": p.final_distance,
                "steps": p.steps,
                "return": p.episode_return,
                "random_success": r.success,
                "random_return": r.episode_return,
                "random_reached": r.reached,
                "random_final_distance": r.final_distance,
            }
            for i, (p, r) in enumerate(zip(planned, random, strict=True))
        ],
    }
    write_json(out / "summary.json", summary)
    return summary
