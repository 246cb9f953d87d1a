"""Closed-loop evaluation of an agent (`vjepa-world evaluate`): its policy against random actions.

Episode i resets the environment with seed `seed + i` for the agent and for the random baseline,
so both face the same start (and target). The agent acts from pixels with its policy's mode
(`AgentPolicy`); seconds per action is the policy's time per environment step (encoding and the
actor, once every frame skip, spread over the steps it covers), eager or compiled ahead of time.
Writes `episode_XXX.mp4` (the agent's first `videos` episodes) and `summary.json` into `out`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..agent import Agent
from ..agent_pixels import AgentPolicy, PolicyDecision
from ..data.video import write_video
from ..envs import make_env
from ..files import write_json
from ..planning import EpisodeResult, run_policy_episode, run_random_episode, seconds_per_action
from ..policy_export import POLICY_PACKAGE, CompiledPolicy, export_policy
from .planning import side_by_side


def episode_table(results: list[EpisodeResult], baseline: list[EpisodeResult]) -> dict:
    """Success, return and seconds per action of `results` beside the random `baseline`."""
    return {
        "success_rate": float(np.mean([r.success for r in results])),
        "random_success_rate": float(np.mean([r.success for r in baseline])),
        "return": float(np.mean([r.episode_return for r in results])),
        "random_return": float(np.mean([r.episode_return for r in baseline])),
        "reached_rate": float(np.mean([r.reached for r in results])),
        "random_reached_rate": float(np.mean([r.reached for r in baseline])),
        "seconds_per_action": seconds_per_action(results),
    }


def success_ratio_interval(
    successes: list[bool], reference: list[bool], level: float = 0.9, draws: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """A paired bootstrap interval (percentiles, `level` coverage) of mean(successes) /
    mean(reference), two runs over the same starts (episode i of each from the same seed):
    resampling the starts keeps what the two runs share, so the interval is narrower than two
    independent binomial errors give. Resamples where the reference never succeeds are dropped."""
    if len(successes) != len(reference) or not successes:
        raise ValueError(
            f"need the two runs' successes over the same starts, got {len(successes)} and {len(reference)}"
        )
    pairs = np.array([successes, reference], dtype=float)  # (2, E)
    picks = np.random.default_rng(seed).integers(0, pairs.shape[1], size=(draws, pairs.shape[1]))
    rates = pairs[:, picks].mean(axis=2)  # (2, draws)
    ratios = rates[0][rates[1] > 0] / rates[1][rates[1] > 0]
    if not len(ratios):
        raise ValueError("the reference never succeeds: the ratio of success rates is undefined")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def evaluate_agent(
    env_spec: str,
    world_model,
    agent: Agent | CompiledPolicy,
    out: str | Path,
    *,
    episodes: int = 10,
    seed: int = 10_000,
    image_size: int = 64,
    max_steps: int | None = None,
    videos: int | None = 4,
    progress: bool = True,
    compiled: bool = False,
) -> dict:
    """Run `episodes` episodes of the agent and of random actions in `env_spec`; write the outputs.
    `compiled`: act with the decision compiled ahead of time (`policy_export`, written to
    `out/policy.pt2`; its compile time is reported apart, not in seconds per action). An `agent`
    already compiled (`CompiledPolicy`) acts as it is."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_spec, image_size=image_size)
    limit = max_steps or getattr(env.spec, "max_episode_steps", None) or 50
    fps = float(env.metadata.get("render_fps") or 10.0)
    world_model.eval()
    started = time.perf_counter()
    decide = agent if isinstance(agent, CompiledPolicy) else PolicyDecision(world_model, agent.eval())
    if compiled and not isinstance(agent, CompiledPolicy):
        if progress:
            tqdm.write(f"compiling the policy into {out / POLICY_PACKAGE} (10-30 s)")
        decide = export_policy(world_model, agent, out / POLICY_PACKAGE, frame_size=(image_size, image_size))
    compile_seconds = time.perf_counter() - started
    results, random = [], []
    bar = tqdm(range(episodes), desc=f"evaluate {env_spec}", unit="episode", disable=not progress)
    try:
        for i in bar:
            policy = AgentPolicy(decide)
            results.append(run_policy_episode(env, policy, seed=seed + i, max_steps=limit))
            random.append(run_random_episode(env, seed=seed + i, max_steps=limit))
            if videos is None or i < videos:
                write_video(out / f"episode_{i:03d}.mp4", side_by_side(results[-1]), fps=fps)
            bar.set_postfix(success=f"{np.mean([r.success for r in results]):.0%}")
    finally:
        env.close()
    summary = {
        "env": env_spec,
        "episodes": episodes,
        "max_steps": limit,
        **episode_table(results, random),
        "seconds": round(time.perf_counter() - started, 2),
        "compiled": isinstance(decide, CompiledPolicy),
        "compile_seconds": round(compile_seconds, 2),
        "per_episode": [
            {
                "seed": seed + i,
                "return": r.episode_return,
                "success": r.success,
                "random_return": b.episode_return,
            }
            for i, (r, b) in enumerate(zip(results, random, strict=True))
        ],
    }
    write_json(out / "summary.json", summary)
    return summary
