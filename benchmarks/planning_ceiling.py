"""How well could goal-image planning do with a perfect world model? CEM with the true simulator.

The planner and MPC settings are the demo's (`fast` preset unless --preset), but every candidate
action sequence is played in ReacherGoal's own physics (`ReacherGoalEnv.simulate`), so prediction
error is zero and only the energy differs:
- fingertip: distance of the simulated fingertip to the goal fingertip (true state, not images);
- pixels:    L1 between the simulated frames and the goal image;
- latents:   L1 between the encoder's latents of the simulated frames and of the goal image (the
             energy `vjepa-world plan` minimises, with the encoder of each --world-model).
A random policy on the same seeds is the floor. When the latent energy fails with perfect dynamics,
no predictor trained on that encoder can plan better: the encoder is the limit.

    python benchmarks/planning_ceiling.py --world-model runs/demo/world_model [--world-model RUN2 ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vjepa_world import WorldModel
from vjepa_world.envs import make_env
from vjepa_world.planning import goal_energy, plan_actions, planner_config, run_random_episode, warm_start


def features(energy: str, world_model: WorldModel | None):
    """(frames (S, H, h, w, 3) uint8, fingertips (S, H, 2)) -> what the energy compares (S, H, N, D)."""
    if energy == "fingertip":
        return lambda frames, tips: torch.as_tensor(tips, dtype=torch.float32)[:, :, None]
    if energy == "pixels":
        return lambda frames, tips: torch.as_tensor(frames).float().div(255).flatten(2)[:, :, None]
    return lambda frames, tips: world_model.encode(torch.as_tensor(frames))


@torch.no_grad()
def planned_episode(env, featurize, config, seed: int, max_steps: int) -> tuple[bool, float, float]:
    """MPC with the simulator as the model: (success at the end, final distance, seconds per action)."""
    _, info = env.reset(seed=seed)
    reacher = env.unwrapped
    goal = featurize(info["goal_image"][None, None], info["goal_fingertip"][None, None])[0, 0]  # (N, D)
    objective = goal_energy(goal, config.energy, config.reduce)
    low, high = torch.as_tensor(env.action_space.low), torch.as_tensor(env.action_space.high)
    generator, previous, seconds = torch.Generator().manual_seed(config.seed + seed), None, []
    for _ in range(max_steps):
        started = time.perf_counter()
        plan = plan_actions(
            lambda actions: featurize(*reacher.simulate(actions.numpy())),
            objective,
            low,
            high,
            config,
            init_mean=previous,
            generator=generator,
        )
        seconds.append(time.perf_counter() - started)
        _, _, _, _, info = env.step(plan.actions[0].numpy())
        previous = warm_start(plan.actions, 1, low, high)
    return bool(info["is_success"]), float(info["distance"]), float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--world-model",
        action="append",
        default=[],
        help="a train-wm run: adds its latent-energy row (repeatable)",
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--horizon", type=int, help="planning horizon (default: the preset's)")
    parser.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i (as `plan`)")
    args = parser.parse_args()
    changes = {"horizon": args.horizon} if args.horizon else {}
    config = planner_config(args.preset, **changes)
    models = {run: WorldModel.from_pretrained(run).eval() for run in args.world_model}
    energies = ["fingertip", "pixels"] + [f"latents {run}" for run in models]
    env = make_env("vjepa_world/ReacherGoal-v0")
    limit = env.spec.max_episode_steps
    print(
        f"ReacherGoal, {args.episodes} episodes of {limit} steps; CEM {config.samples} samples x "
        f"{config.iterations} iterations, horizon {config.horizon}, the true simulator as the model"
    )
    width = max(len(energy) for energy in energies)
    print(f"\n{'energy':{width}} {'success':>8} {'final distance':>15} {'s/action':>9}")
    seeds = range(args.seed, args.seed + args.episodes)
    for energy in energies:
        featurize = features(energy, models.get(energy.removeprefix("latents ")))
        results = [planned_episode(env, featurize, config, seed, limit) for seed in seeds]
        success, distance, seconds = (np.mean(column) for column in zip(*results, strict=True))
        print(f"{energy:{width}} {success:8.0%} {distance:15.3f} {seconds:9.3f}", flush=True)
    randoms = [run_random_episode(env, seed=seed, max_steps=limit) for seed in seeds]
    success, distance = np.mean([r.success for r in randoms]), np.mean([r.final_distance for r in randoms])
    print(f"{'random':{width}} {success:8.0%} {distance:15.3f} {'-':>9}")
    env.close()


if __name__ == "__main__":
    main()
