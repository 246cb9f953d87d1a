"""Does `collect -> train-wm -> plan` with every default work on environments it was not tuned on?

Per environment: collect `collect`'s default 1,600 episodes (the time limit's steps each;
`--policy`, by default collect's `mixed`), train a world model with train-wm's defaults, plan with
plan's defaults against random actions from the same starts. The environments: the three built-in
bodies (ReacherGoal, PendulumGoal, PointMassGoal), TwoRoomsGoal (a wall between many starts and
goals), and two variants nobody tuned anything on: the reacher seen by a tilted, turned camera, and
the reacher and the point mass with `info["state"]` removed (a user's environment without
proprioception: no state token, no state head).

    python benchmarks/every_default.py                         # all seven, about 3.5 hours on 2 cores
    python benchmarks/every_default.py --env reacher-tilted --plan-set objective=latent   # an ablation
    python benchmarks/every_default.py --env point-mass --policy random   # another collection policy
    python benchmarks/every_default.py --smoke --episodes 6 --plan-episodes 1   # checks the script

`--train-set` / `--plan-set` change one setting (train-wm `section.key=value`, planner `key=value`)
for an ablation; a trained model is reused whenever its training settings are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import gymnasium
import torch

from vjepa_world.data.episodes import write_lerobot_dataset
from vjepa_world.demo import SMOKE_TRAINING
from vjepa_world.envs import (
    DEFAULT_EPISODES,
    DEFAULT_POLICY,
    PENDULUM_ID,
    POINT_MASS_ID,
    POLICIES,
    REACHER_ID,
    TWO_ROOMS_ID,
    collect_episodes,
)
from vjepa_world.envs.point_mass import PointMassGoalEnv
from vjepa_world.envs.reacher import ReacherGoalEnv
from vjepa_world.eval.planning import evaluate_planning
from vjepa_world.planning import planner_config
from vjepa_world.train.config import WorldModelConfig, build_config, load_yaml
from vjepa_world.train.world_model import train_world_model
from vjepa_world.world_model import WorldModel


class WithoutState(gymnasium.Wrapper):
    """An environment whose infos carry no "state": what a user's own environment may look like."""

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {k: v for k, v in info.items() if k != "state"}

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {k: v for k, v in info.items() if k != "state"}


def without_state(env_class, **kwargs) -> gymnasium.Env:
    """`env_class(**kwargs)` with "state" taken out of its infos (registered with env_class in kwargs)."""
    return WithoutState(env_class(**kwargs))


VARIANTS = {  # name: (registered id, time limit, registration kwargs or None for a built-in id)
    "reacher": (REACHER_ID, 50, None),
    "pendulum": (PENDULUM_ID, 100, None),
    "point-mass": (POINT_MASS_ID, 50, None),
    "two-rooms": (TWO_ROOMS_ID, 100, None),
    "reacher-tilted": (
        "bench/ReacherTilted-v0",
        50,
        {"entry_point": ReacherGoalEnv, "kwargs": {"camera_elevation": -55.0, "camera_azimuth": 60.0}},
    ),
    "reacher-stateless": (
        "bench/ReacherStateless-v0",
        50,
        {"entry_point": without_state, "kwargs": {"env_class": ReacherGoalEnv}},
    ),
    "point-mass-stateless": (
        "bench/PointMassStateless-v0",
        50,
        {"entry_point": without_state, "kwargs": {"env_class": PointMassGoalEnv}},
    ),
}


def register_variants() -> None:
    for env_id, limit, registration in VARIANTS.values():
        if registration and env_id not in gymnasium.registry:
            gymnasium.register(env_id, max_episode_steps=limit, **registration)


def collected(out: Path, env: str, episodes: int, steps: int, policy: str) -> Path:
    if not (out / "meta" / "info.json").exists():
        episodes = collect_episodes(env, episodes, steps, policy=policy, progress=False)
        write_lerobot_dataset(out, episodes, progress=False)
    return out


def trained(out: Path, data: Path, settings: list[str]) -> tuple[Path, dict]:
    """A train-wm run with these settings (one folder per distinct list, reused when finished)."""
    run = out / ("wm-" + hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:8])
    if not (run / "summary.json").exists():
        config = build_config({}, settings, kind=WorldModelConfig)
        train_world_model(config, data, run, resume=(run / "checkpoint.pt").exists(), progress=True)
    return run, json.loads((run / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/bench-every-default")
    parser.add_argument("--env", action="append", choices=list(VARIANTS), help="default: all")
    parser.add_argument(
        "--episodes",
        type=int,
        default=DEFAULT_EPISODES,
        help="training episodes collected (collect's default)",
    )
    parser.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES, help="collect's policy")
    parser.add_argument("--plan-episodes", type=int, default=50)
    parser.add_argument("--train-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--plan-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models: checks the script, not the figures"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    register_variants()
    settings = (SMOKE_TRAINING if args.smoke else []) + args.train_set
    changes = {key: load_yaml(value) for key, _, value in (p.partition("=") for p in args.plan_set)}
    rows = []
    for name in args.env or list(VARIANTS):
        env_id, limit, _ = VARIANTS[name]
        folder = Path(args.out) / (name if args.policy == DEFAULT_POLICY else f"{name}-{args.policy}")
        data = collected(folder / "data", env_id, args.episodes, limit, args.policy)
        run, summary = trained(folder, data, settings)
        world_model = WorldModel.from_pretrained(run).eval()
        tag = "-".join(args.plan_set) or "defaults"
        plan = evaluate_planning(
            env_id,
            world_model,
            planner_config(**changes),
            run / f"plan-{tag}",
            episodes=args.plan_episodes,
            videos=3,
        )
        l1 = summary.get("val", {}).get("l1", {})
        rows.append((name, plan, l1))
        print(
            name, {k: plan[k] for k in ("success_rate", "random_success_rate", "final_distance")}, flush=True
        )
    training, planner = " ".join(args.train_set) or "defaults", " ".join(args.plan_set) or "defaults"
    print(f"\ntrain-wm {training}; planner {planner}")
    print("| env | success | random | final distance (random) | s/step | L1 h=1: model, copy, shuffled |")
    print("|---|---|---|---|---|---|")
    for name, plan, l1 in rows:
        errors = ", ".join(
            f"{l1[k][0]:.3f}" if k in l1 else "-" for k in ("world model", "copy last", "shuffled actions")
        )
        distances = f"{plan['final_distance']:.3f} ({plan['random_final_distance']:.3f})"
        print(
            f"| {name} | {plan['success_rate']:.0%} | {plan['random_success_rate']:.0%} | {distances} | "
            f"{plan['seconds_per_action']:.3f} | {errors} |"
        )


if __name__ == "__main__":
    main()
