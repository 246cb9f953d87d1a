"""Does a world model's latent locate the reacher's arm precisely enough to plan to a 5 cm goal?

Renders ReacherGoal frames at 600 uniform random poses (at rest, as goal images are), encodes them
with each world model given, and prints per model:
- the linear (ridge) R^2 of cos/sin of both joints and the fingertip xy from the latents, fitted
  on 450 poses and scored on the other 150;
- the fingertip error of the 5 nearest latents' poses (kNN), against the mean pose (chance): how
  finely the latent separates poses, the precision planning needs (success radius 0.05 m);
- Spearman's rank correlation between the fingertip distance and the latent L2 distance (and the
  distance head's, when the model has one) over 3,000 random pose pairs.

    python benchmarks/latent_geometry.py RUN [RUN ...]     # train-wm runs on ReacherGoal data
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from vjepa_world.envs.reacher import ReacherGoalEnv
from vjepa_world.world_model import WorldModel

POSES, FITTED, PAIRS, NEIGHBOURS = 600, 450, 3000, 5


def rendered_poses(seed: int = 123) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """frames `(P, 64, 64, 3)` uint8, targets `(P, 6)` (cos q, sin q, fingertip xy), fingertips `(P, 2)`."""
    env = ReacherGoalEnv(image_size=64)
    env.reset(seed=seed)
    poses = np.stack([env._sample_pose() for _ in range(POSES)])
    frames, tips = [], []
    for pose in poses:
        frame, info = env.set_state(pose)
        frames.append(frame)
        tips.append(info["fingertip"])
    env.close()
    tips = np.stack(tips)
    return torch.from_numpy(np.stack(frames)), np.concatenate([np.cos(poses), np.sin(poses), tips], 1), tips


def ridge_r2(x: np.ndarray, y: np.ndarray, fitted: slice, scored: slice) -> np.ndarray:
    """Per-target R^2 on `scored` of a ridge regression (with bias) fitted on `fitted`."""
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    weights = np.linalg.solve(x[fitted].T @ x[fitted] + 1e-2 * np.eye(x.shape[1]), x[fitted].T @ y[fitted])
    residual = ((x[scored] @ weights - y[scored]) ** 2).sum(0)
    return 1 - residual / ((y[scored] - y[scored].mean(0)) ** 2).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="world-model directories (train-wm --out)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    frames, targets, tips = rendered_poses()
    fitted, scored = slice(0, FITTED), slice(FITTED, POSES)
    chance = np.linalg.norm(tips[scored] - tips[fitted].mean(0), axis=1).mean()
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, POSES, PAIRS), rng.integers(0, POSES, PAIRS)
    true_distance = np.linalg.norm(tips[first] - tips[second], axis=1)
    print(
        "| world model | linear R^2 cos q0, cos q1, sin q0, sin q1, tip x, tip y | kNN fingertip error (m) "
        "| Spearman: latent L2, distance head |"
    )
    print("|---|---|---|---|")
    print(f"| chance (the mean pose) | 0 | {chance:.3f} | 0 |")
    for run in args.runs:
        world_model = WorldModel.from_pretrained(run).eval()
        with torch.no_grad():
            latents = world_model.encode(frames)  # (P, N, D) at rest
            head = None
            if world_model.distance_head is not None:
                head = world_model.distance_head.distance(latents[first], latents[second]).numpy()
        x = latents.flatten(1).double().numpy()
        r2 = ridge_r2(x, targets, fitted, scored)
        squared = ((x[scored, None] - x[None, fitted]) ** 2).sum(-1)  # (scored, fitted)
        nearest = np.argsort(squared, 1)[:, :NEIGHBOURS]
        knn = np.linalg.norm(tips[fitted][nearest].mean(1) - tips[scored], axis=1).mean()
        latent_rank = spearmanr(np.linalg.norm(x[first] - x[second], axis=1), true_distance)[0]
        head_rank = "-" if head is None else f"{spearmanr(head, true_distance)[0]:.2f}"
        print(f"| {run} | {', '.join(f'{v:.2f}' for v in r2)} | {knn:.3f} | {latent_rank:.2f}, {head_rank} |")


if __name__ == "__main__":
    main()
