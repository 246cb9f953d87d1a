"""Does the world model use its actions? Held-out latent prediction error on ReacherGoal.

1. Collect training episodes (random actions, seeds 0..) and held-out episodes (other seeds) on
   vjepa_world/ReacherGoal-v0 with `vjepa-world collect`'s code.
2. `train-wm` with its defaults (joint: encoder, projector, state head and action-conditioned
   predictor trained end to end from pixels on steps of 5 environment steps with the state token);
   `--set model.encoder_training=frozen` for the V-JEPA 2-AC recipe.
3. On every window of the held-out episodes: after observing a few steps (as MPC does), the
   open-loop rollout error per horizon of the world model, against copying the last observed
   latents and against the same model fed the actions of other windows (shuffled). The model
   uses the actions if the true ones give clearly lower error.

    python benchmarks/world_model_quality.py                 # about 12 minutes on 2 cores
    python benchmarks/world_model_quality.py --set optim.steps=20   # smoke
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from vjepa_world.checkpoints import encoder_fingerprint
from vjepa_world.data.episodes import STATE_KEY, SequenceDataset, encode_episodes, write_lerobot_dataset
from vjepa_world.envs import REACHER_ID, collect_episodes
from vjepa_world.horizon_errors import rollout_errors
from vjepa_world.train.config import WorldModelConfig, build_config
from vjepa_world.train.world_model import train_world_model
from vjepa_world.world_model import WorldModel


def collected(out: Path, episodes: int, seed: int, policy: str) -> Path:
    """A ReacherGoal dataset in `out`, collected once (reused when rerun)."""
    if not (out / "meta" / "info.json").exists():
        episodes_iter = collect_episodes(REACHER_ID, episodes, 50, policy=policy, seed=seed, progress=False)
        write_lerobot_dataset(out, episodes_iter, progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="runs/world_model_quality", help="datasets and the run")
    parser.add_argument("--episodes", type=int, default=200, help="training episodes of 50 steps")
    parser.add_argument("--test-episodes", type=int, default=40)
    parser.add_argument("--horizon", type=int, default=4, help="model steps (each data.frame_skip env steps)")
    parser.add_argument("--set", action="append", default=[], help="train-wm config overrides")
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()

    train_data = collected(work / f"train-{args.episodes}", args.episodes, seed=0, policy="random")
    test_data = collected(
        work / f"test-{args.test_episodes}", args.test_episodes, seed=100_000, policy="random"
    )
    print(f"data ready in {time.perf_counter() - started:.0f} s", flush=True)
    config = build_config({"data": {"val_fraction": 0.0}}, args.set, kind=WorldModelConfig)
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    run = work / f"run-{digest}"  # one run per train-wm configuration: other settings train anew
    if not (run / "summary.json").exists():
        train_world_model(config, train_data, run, resume=(run / "checkpoint.pt").exists())
    trained = json.loads((run / "summary.json").read_text())["seconds"]  # training only, as first run
    world_model = WorldModel.from_pretrained(run).eval()

    features = encode_episodes(
        test_data,
        world_model.encode,
        run / "features",
        key=encoder_fingerprint(world_model.encoder, world_model.projector),
    )
    state_key = STATE_KEY if config.model.use_states else None
    context = config.loss.rollout_context
    frames = context + 1 + args.horizon
    windows = SequenceDataset(
        test_data, frames, config.data.frame_skip, features=features, state_key=state_key
    )
    errors = rollout_errors(
        world_model, windows, args.horizon, context=context, use_states=config.model.use_states
    )

    print(
        f"\nReacherGoal, {errors['windows']} held-out windows, latent L1 by horizon (frame skip "
        f"{config.data.frame_skip}); predictor trained in {trained:.0f} s"
    )
    header = "".join(f"{h:>8d}" for h in range(1, args.horizon + 1))
    print(f"{'method':18}{header}")
    for method, values in errors["l1"].items():
        print(f"{method:18}" + "".join(f"{v:8.4f}" for v in values))
    model, copy, shuffled = (errors["l1"][k] for k in ("world model", "copy last", "shuffled actions"))
    print("ratio to copy-last  " + "".join(f"{m / c:8.2f}" for m, c in zip(model, copy, strict=True)))
    print("ratio to shuffled   " + "".join(f"{m / s:8.2f}" for m, s in zip(model, shuffled, strict=True)))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
