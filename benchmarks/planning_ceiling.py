"""How well could goal-image planning do with a perfect world model? The true simulator, same MPC loop.

Every candidate action sequence is played in the environment's own physics (`SimulatorWorldModel`;
ReacherGoal by default, `--env` any built-in goal task), so
prediction error is zero and only the energy differs. The planner, its horizon, the frame skip (a
model step of k environment steps, the k actions planned as one) and the replanning are exactly
those `vjepa-world plan` uses with the learned model: `run_mpc_episode` runs both.
- fingertip: distance of the simulated fingertip (pendulum tip, point mass) to the goal's (true state);
- pixels:    distance between the simulated frames and the goal image;
- latents:   distance between a world model's latents of the simulated frames and of the goal
             image (the energy `vjepa-world plan` minimises, with the encoder of each --world-model).
A random policy on the same seeds is the floor. When the latent energy fails with perfect dynamics,
no predictor trained on that encoder can plan better: the encoder is the limit.

    python benchmarks/planning_ceiling.py --world-model runs/demo/world_model [--world-model RUN2 ...]
    python benchmarks/planning_ceiling.py --episodes 20 --set samples=100 --set iterations=5 \
        --set elites=10 --set reduce=final        # the true distance only: one row of docs/results.md
    python benchmarks/planning_ceiling.py --env vjepa_world/PendulumGoal-v0 --set horizon=6
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vjepa_world import WorldModel
from vjepa_world.cli import planner_overrides
from vjepa_world.config import PLANNER_PRESETS, planner_config
from vjepa_world.envs import REACHER_ID, make_env
from vjepa_world.eval.ceiling import SimulatorWorldModel
from vjepa_world.planning import run_mpc_episode, run_random_episode, seconds_per_action


def ceiling_rows(
    env, config, frame_skip: int, models: dict, seeds, limit: int, energies=("fingertip", "pixels")
) -> list[tuple]:
    """(energy, success, final distance, s/action) per energy, then random actions."""
    rows = []
    candidates = [(name, None) for name in energies] + [(f"latents {r}", m) for r, m in models.items()]
    for name, world_model in candidates:
        model = SimulatorWorldModel(env, name.split()[0], frame_skip, world_model)
        results = [run_mpc_episode(env, model, config, seed=seed, max_steps=limit) for seed in seeds]
        rows.append(
            (
                name,
                np.mean([r.success for r in results]),
                np.mean([r.final_distance for r in results]),
                seconds_per_action(results),
            )
        )
    randoms = [run_random_episode(env, seed=seed, max_steps=limit) for seed in seeds]
    rows.append(
        ("random", np.mean([r.success for r in randoms]), np.mean([r.final_distance for r in randoms]), None)
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--world-model", action="append", default=[], help="a train-wm run: adds its latent row"
    )
    parser.add_argument("--env", default=REACHER_ID, help="a built-in goal task (one with simulate)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--energy", action="append", choices=["fingertip", "pixels"], help="default: both (plus each model's)"
    )
    parser.add_argument("--preset", default="default", choices=list(PLANNER_PRESETS))
    parser.add_argument("--frame-skip", type=int, help="default: the first --world-model's, else 5")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="planner setting, e.g. horizon=5 reduce=final hold_actions=true samples=100",
    )
    parser.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i (as `plan`)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = planner_config(args.preset, **planner_overrides([f"planner.{pair}" for pair in args.set])[0])
    models = {run: WorldModel.from_pretrained(run).eval() for run in args.world_model}
    skip = args.frame_skip or (next(iter(models.values())).frame_skip if models else 5)
    env = make_env(args.env)
    limit = env.spec.max_episode_steps
    print(
        f"{args.env}, {args.episodes} episodes of {limit} steps; {config.method} {config.samples} samples x "
        f"{config.iterations} iterations, horizon {config.horizon} model steps of {skip} env steps, "
        f"executing {config.execute}; the true simulator as the model"
    )
    seeds = range(args.seed, args.seed + args.episodes)
    rows = ceiling_rows(env, config, skip, models, seeds, limit, args.energy or ("fingertip", "pixels"))
    width = max(len(row[0]) for row in rows)
    print(f"\n{'energy':{width}} {'success':>8} {'final distance':>15} {'s/env step':>11}")
    for name, success, distance, seconds in rows:
        shown = "-" if seconds is None else f"{seconds:.3f}"
        print(f"{name:{width}} {success:8.0%} {distance:15.3f} {shown:>11}")
    env.close()


if __name__ == "__main__":
    main()
