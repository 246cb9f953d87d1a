"""How much do ReacherGoal's actions show in the next frames, next to the arm's own motion?

From states reached by random actions, play two independent random action sequences in the
simulator (`ReacherGoalEnv.simulate`) and measure, per horizon, how far apart the two fingertips
end up (what the actions decide) against how far the fingertip moved from where it was (what
copying the last frame misses), in pixels at the default 64 px, and the same in pixel L1. A
world model can only show it uses the actions where the first is not small next to the second.

    python benchmarks/action_effect.py            # a few seconds
"""

from __future__ import annotations

import argparse

import numpy as np

from vjepa_world.envs import REACHER_ID, make_env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=40, help="start states (one episode each)")
    parser.add_argument("--warmup", type=int, default=10, help="random steps before measuring")
    parser.add_argument("--horizon", type=int, default=8, help="environment steps")
    args = parser.parse_args()
    env = make_env(REACHER_ID).unwrapped
    metres_per_pixel = 0.5 / env.image_size  # the top-down camera spans +-0.25 m
    rng = np.random.default_rng(0)
    tip_moved, tip_apart, pixels_moved, pixels_apart = (np.zeros(args.horizon) for _ in range(4))
    for start in range(args.starts):
        observation, info = env.reset(seed=start)
        for _ in range(args.warmup):
            observation, _, _, _, info = env.step(rng.uniform(-1, 1, 2))
        frames, tips = env.simulate(rng.uniform(-1, 1, (2, args.horizon, 2)))  # (2, H, h, w, 3), (2, H, 2)
        frames = frames.astype(np.float32) / 255
        tip_moved += np.linalg.norm(tips[0] - info["fingertip"], axis=-1) / metres_per_pixel
        tip_apart += np.linalg.norm(tips[0] - tips[1], axis=-1) / metres_per_pixel
        pixels_moved += np.abs(frames[0] - observation.astype(np.float32) / 255).mean(axis=(1, 2, 3))
        pixels_apart += np.abs(frames[0] - frames[1]).mean(axis=(1, 2, 3))
    env.close()
    rows = {
        "fingertip moved (px)": tip_moved,
        "two action seqs apart (px)": tip_apart,
        "pixel L1 vs last frame": pixels_moved,
        "pixel L1 between the two": pixels_apart,
    }
    print(f"ReacherGoal, {args.starts} states after {args.warmup} random steps, by environment step")
    print(f"{'':28}" + "".join(f"{h:>8d}" for h in range(1, args.horizon + 1)))
    for name, values in rows.items():
        print(f"{name:28}" + "".join(f"{v / args.starts:8.3f}" for v in values))


if __name__ == "__main__":
    main()
