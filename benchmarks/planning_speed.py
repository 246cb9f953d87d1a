"""Seconds per planning step: KV-cached rollouts against recomputing the whole sequence per sample.

One planning step = `plan_actions` from the current frame with `history` observed steps as context
(the MPC loop's default is 3), for the demo's world model (the default train-wm encoder, vit_tiny
with 16 px patches at 64 px = 16 tokens per frame, and the ac_tiny predictor; random weights: the
speed does not depend on them). Cached: the history runs once (`observe`), every sample continues
from its cache one step at a time. Recomputed: every rollout step reruns the full block-causal
sequence (history, current frame, predictions so far) for every sample (`rollout_uncached`).

    python benchmarks/planning_speed.py                # vjepa2_ac and fast presets, history 0 and 3
    python benchmarks/planning_speed.py --run runs/demo/world_model   # a trained model instead
"""

from __future__ import annotations

import argparse
import time

import torch

from vjepa_world import VideoEncoder, WorldModel
from vjepa_world.config import get_preset
from vjepa_world.planning import PLANNER_PRESETS, goal_energy, plan_actions
from vjepa_world.train.config import EncoderPretraining


def demo_world_model() -> WorldModel:
    """The architecture `vjepa-world demo` trains, with random weights."""
    settings = EncoderPretraining()
    encoder_config = get_preset(settings.preset).encoder
    encoder = VideoEncoder(encoder_config, patch_size=settings.patch_size, image_size=64)
    return WorldModel(encoder, action_dim=2).eval()


@torch.no_grad()
def seconds_per_plan(world_model: WorldModel, preset: str, history: int, cached: bool, repeats: int) -> float:
    """Best wall time of one planning step over `repeats` runs."""
    config = PLANNER_PRESETS[preset]
    tokens, dim = 16, world_model.encoder.config.dim
    latents = torch.nn.functional.layer_norm(torch.randn(1, history + 2, tokens, dim), (dim,))
    past, current, goal = latents[:, :history], latents[:, history], latents[0, -1]
    taken = torch.rand(1, history, world_model.action_dim) * 2 - 1
    low, high = -torch.ones(world_model.action_dim), torch.ones(world_model.action_dim)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        if cached:
            observed = world_model.observe(past, taken) if history else None
            rollout = lambda actions, h=observed: world_model.rollout(current, actions, history=h)
        else:
            rollout = lambda actions: world_model.rollout_uncached(current, actions, history=(past, taken))
        plan_actions(
            rollout, goal_energy(goal), low, high, config, generator=torch.Generator().manual_seed(0)
        )
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="a train-wm run directory (default: the demo's architecture, random)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world_model = WorldModel.from_pretrained(args.run).eval() if args.run else demo_world_model()
    predictor = world_model.predictor.config
    print(
        f"world model: encoder width {world_model.encoder.config.dim}, predictor {predictor.depth} blocks x "
        f"{predictor.dim}, 16 tokens per frame; {args.threads} threads"
    )
    columns = f"{'samples x iters':>15} {'history':>8} {'cached s':>9} {'recomputed s':>13} {'speed-up':>9}"
    print(f"\n{'preset':10} {columns}")
    for preset in ("vjepa2_ac", "fast"):
        config = PLANNER_PRESETS[preset]
        for history in (0, 3):
            cached = seconds_per_plan(world_model, preset, history, True, args.repeats)
            recomputed = seconds_per_plan(world_model, preset, history, False, args.repeats)
            print(
                f"{preset:10} {f'{config.samples} x {config.iterations}':>15} {history:8d} {cached:9.3f} "
                f"{recomputed:13.3f} {recomputed / cached:8.1f}x"
            )


if __name__ == "__main__":
    main()
