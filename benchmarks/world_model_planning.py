"""Which encoder mode plans? frozen / finetune / joint on ReacherGoal and PendulumGoal, one table.

Per environment: collect random-action episodes once (`collect`'s code), then per mode train a
world model with train-wm's defaults but `model.encoder_training` (frozen and finetune start from
one V-JEPA encoder pretrained on the same frames; joint from scratch), and report
- planning success, final distance and seconds per environment step (`plan` with every default,
  against random actions from the same starts);
- the ceiling of the same latent energy, the true simulator in the same MPC loop;
- the held-out rollout error (latent L1 at the first and last horizon) against copying the last
  latents and against shuffled actions (train-wm's summary).

    python benchmarks/world_model_planning.py                      # about an hour on 2 cores
    python benchmarks/world_model_planning.py --episodes 12 --steps 4 --pretrain-steps 4 --plan-episodes 1 \
        --ceiling-episodes 1 --smoke --out /tmp/bench-smoke              # checks the script in a minute
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vjepa_world.data.episodes import write_lerobot_dataset
from vjepa_world.demo import SMOKE_TRAINING
from vjepa_world.envs import PENDULUM_ID, REACHER_ID, collect_episodes, make_env
from vjepa_world.eval.ceiling import SimulatorWorldModel
from vjepa_world.eval.planning import evaluate_planning
from vjepa_world.planning import planner_config, run_mpc_episode
from vjepa_world.train.config import WorldModelConfig, build_config
from vjepa_world.train.wm_encoder import pretrain_encoder
from vjepa_world.train.world_model import train_world_model
from vjepa_world.world_model import ENCODER_TRAINING, WorldModel

ENVS = {REACHER_ID: 50, PENDULUM_ID: 100}  # steps per episode (the registered time limits)


def collected(out: Path, env: str, episodes: int, steps: int) -> Path:
    if not (out / "meta" / "info.json").exists():
        write_lerobot_dataset(out, collect_episodes(env, episodes, steps, progress=False), progress=False)
    return out


def trained(
    run: Path, data: Path, mode: str, settings: list[str], encoder_dir: Path, pretrain_steps: int
) -> dict:
    """train-wm's summary for one mode (reused when `run` holds a finished one)."""
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    pretraining = [] if mode == "joint" else [f"encoder.steps={pretrain_steps}"]  # joint refuses it
    config = build_config(
        {}, [*settings, *pretraining, f"model.encoder_training={mode}"], kind=WorldModelConfig
    )
    encoder = None
    if mode != "joint":
        encoder = pretrain_encoder(data, encoder_dir, config.encoder, config.run.seed, progress=True)
    return train_world_model(config, data, run, encoder=encoder, resume=(run / "checkpoint.pt").exists())


def ceiling(env_id: str, world_model: WorldModel, episodes: int) -> float:
    """Success of the model's latent energy with the true simulator as dynamics."""
    env = make_env(env_id)
    model = SimulatorWorldModel(env, "latents", world_model.frame_skip, world_model)
    limit = ENVS[env_id]
    results = [
        run_mpc_episode(env, model, planner_config(), seed=10_000 + i, max_steps=limit)
        for i in range(episodes)
    ]
    env.close()
    return float(np.mean([r.success for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/bench-world-model-planning")
    parser.add_argument(
        "--episodes", type=int, default=300, help="training episodes collected per environment"
    )
    parser.add_argument("--steps", type=int, default=600, help="train-wm steps per mode")
    parser.add_argument(
        "--pretrain-steps", type=int, default=1000, help="V-JEPA steps of the frozen/finetune encoder"
    )
    parser.add_argument("--plan-episodes", type=int, default=20)
    parser.add_argument("--ceiling-episodes", type=int, default=5)
    parser.add_argument("--env", action="append", choices=list(ENVS), help="default: both")
    parser.add_argument("--mode", action="append", choices=list(ENCODER_TRAINING), help="default: all three")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models: checks the script, not the figures"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    settings = [f"optim.steps={args.steps}"] + (SMOKE_TRAINING if args.smoke else [])
    rows = []
    for env in args.env or list(ENVS):
        data = collected(out / env.replace("/", "_") / "data", env, args.episodes, ENVS[env])
        for mode in args.mode or list(ENCODER_TRAINING):
            run = out / env.replace("/", "_") / mode
            summary = trained(
                run, data, mode, settings, out / env.replace("/", "_") / "encoder", args.pretrain_steps
            )
            world_model = WorldModel.from_pretrained(run).eval()
            plan = evaluate_planning(
                env, world_model, planner_config(), run / "plan", episodes=args.plan_episodes, videos=2
            )
            top = ceiling(env, world_model, args.ceiling_episodes) if args.ceiling_episodes else None
            l1 = summary["val"]["l1"]
            rows.append(
                (
                    env.split("/")[-1],
                    mode,
                    plan["success_rate"],
                    plan["random_success_rate"],
                    plan["final_distance"],
                    plan["seconds_per_action"],
                    top,
                    l1["world model"],
                    l1["copy last"],
                    l1["shuffled actions"],
                )
            )
            print(rows[-1], flush=True)
    print(
        "\n| env | mode | success | random | final distance | s/env step | ceiling (latent energy) "
        "| held-out L1 h=1, last | copy last | shuffled actions |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for env, mode, success, random, distance, seconds, top, model, copy, shuffled in rows:
        pair = lambda v: f"{v[0]:.3f}, {v[-1]:.3f}"
        print(
            f"| {env} | {mode} | {success:.0%} | {random:.0%} | {distance:.3f} | {seconds:.3f} | "
            f"{'-' if top is None else f'{top:.0%}'} | {pair(model)} | {pair(copy)} | {pair(shuffled)} |"
        )


if __name__ == "__main__":
    main()
