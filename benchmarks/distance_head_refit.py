"""How much of a world model's planning success is its distance head's? Refit the head, plan again.

Takes a finished train-wm run, refits its learned goal energy (`TemporalDistanceHead`) on the run's
training episodes (its own `data.*` split) with another seed and other `distance.*` settings, keeps
the world model itself, and plans with plan's defaults from the same starts as `every_default.py`
(seeds 10,000+), against random actions. It separates what the world model's latents allow from
what one head's training happened to find (docs/results.md, issue 13: "What separated the seeds").

    python benchmarks/distance_head_refit.py RUN --env reacher-stateless --seed 1
    python benchmarks/distance_head_refit.py RUN --env reacher-stateless --seed 1 --set steps=12000

RUN is a world-model folder written by `every_default.py` (or train-wm on the data it names); the
result goes to RUN/refit-seed<SEED>-<settings>/summary.json and one line on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from every_default import VARIANTS, register_variants
from vjepa_world.checkpoints import read_checkpoint_file
from vjepa_world.data.episodes import LeRobotDataset
from vjepa_world.eval.planning import evaluate_planning
from vjepa_world.planning import planner_config
from vjepa_world.train.config import WorldModelConfig, build_config
from vjepa_world.train.goal_distance import default_steps, fit_distance_head
from vjepa_world.train.loop import CHECKPOINT
from vjepa_world.train.world_model import encode_dataset, split_episodes
from vjepa_world.world_model import WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a finished train-wm folder")
    parser.add_argument("--env", required=True, choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="the head's seed")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a distance.* setting"
    )
    parser.add_argument("--plan-episodes", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(2)
    register_variants()
    data = Path(json.loads((args.run / "summary.json").read_text())["data"])
    saved = json.loads(read_checkpoint_file(args.run / CHECKPOINT)["config"])  # the run's own split
    changes = [f"distance.{change}" for change in args.set]
    config = build_config({"data": saved["data"]}, changes, kind=WorldModelConfig)
    episodes, _ = split_episodes(data, config.data.val_fraction)
    world_model = WorldModel.from_pretrained(args.run).eval()
    features = args.run / "features"
    moving = encode_dataset(world_model, data, features, batch_size=config.data.encode_batch)
    still = encode_dataset(world_model, data, features, pairs=False, batch_size=config.data.encode_batch)
    latents = [moving.read(e, slice(None)) for e in episodes]  # (T_e, N, D) each
    goals = [still.read(e, slice(None)) for e in episodes]  # goal images are at rest
    distance = config.distance
    if distance.steps is None:  # as train-wm resolves it, from every frame of the data
        frames = sum(LeRobotDataset(data, state_key=None).lengths.values())
        distance = dataclasses.replace(distance, steps=default_steps(frames))
    world_model.distance_head = fit_distance_head(latents, distance, goals, args.seed)
    tag = "-".join([f"refit-seed{args.seed}", *args.set])
    plan = evaluate_planning(
        VARIANTS[args.env][0],
        world_model,
        planner_config(),
        args.run / tag,
        episodes=args.plan_episodes,
        videos=0,
    )
    print(
        f"{args.run} {tag} (head steps {distance.steps}): success {plan['success_rate']:.0%} "
        f"(random {plan['random_success_rate']:.0%}), reached {plan['reached_rate']:.0%}, "
        f"final distance {plan['final_distance']:.3f}"
    )


if __name__ == "__main__":
    main()
