"""Joint vs factorized (divided space-time) attention: speed by clip length, then pretraining
loss and probe quality after the same training budget.

1. Speed: encoder forward + backward on full clips of 16, 32 and 64 frames (interleaved, medians).
2. Quality: pretrain the same preset with each attention for the same number of steps on
   generated videos of a square moving in one of four directions, then fit a linear probe on the
   frozen, mean-pooled clip features to predict the direction (a label that needs time to infer),
   against the same encoder untrained.

    python benchmarks/attention_compare.py          # speed: vit_small 128 px; quality: vit_micro 32 px
    python benchmarks/attention_compare.py --only quality --preset vit_tiny --size 64 --steps 400
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vjepa_world import VideoEncoder, get_preset
from vjepa_world.data.video import write_video
from vjepa_world.eval import extract_features
from vjepa_world.train.config import build_config
from vjepa_world.train.logs import read_log
from vjepa_world.train.pretrain import pretrain

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx): right, left, down, up


def speed(preset: str, size: int, frames: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one forward + backward of a batch-2 clip, per attention kind."""
    encoders = {}
    for kind in ("joint", "factorized"):
        torch.manual_seed(0)
        encoders[kind] = VideoEncoder(get_preset(preset).encoder, attention=kind, image_size=size)
    video = torch.randn(2, 3, frames, size, size)
    times = {kind: [] for kind in encoders}
    for repeat in range(repeats + 1):
        for kind, encoder in encoders.items():
            start = time.perf_counter()
            encoder(video).square().mean().backward()
            if repeat:  # the first round is a warm-up
                times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(t) for kind, t in times.items()}


def moving_square(direction: int, size: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, size, size, 3): a square crossing a dim background along one of DIRECTIONS."""
    dy, dx = DIRECTIONS[direction]
    side = size // 4
    speed = rng.uniform(0.6, 1.2) * (size - side) / frames
    y, x = rng.uniform(0, size - side, size=2)
    y = (size - side) / 2 * (1 - dy) if dy else y  # start at the edge it leaves from
    x = (size - side) / 2 * (1 - dx) if dx else x
    colour = rng.integers(120, 256, size=3)
    video = np.full((frames, size, size, 3), rng.integers(0, 60), dtype=np.uint8)
    for t in range(frames):
        top = int(np.clip(y + dy * speed * t, 0, size - side))
        left = int(np.clip(x + dx * speed * t, 0, size - side))
        video[t, top : top + side, left : left + side] = colour
    return video


def make_dataset(
    folder: Path, count: int, size: int, frames: int, seed: int
) -> tuple[list[Path], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(DIRECTIONS), size=count)
    files = [
        write_video(folder / f"{i:04d}.mp4", moving_square(int(y), size, frames, rng), fps=8)
        for i, y in enumerate(labels)
    ]
    return files, labels


def probe_accuracy(train_x, train_y, val_x, val_y, steps: int = 500) -> float:
    """Multinomial logistic regression on standardised features (full batch, Adam, weight decay)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    layer = torch.nn.Linear(train_x.shape[1], len(DIRECTIONS))
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(layer(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (layer(val_x).argmax(1) == val_y).float().mean().item()


def features(encoder: VideoEncoder, files, frames: int) -> torch.Tensor:
    """Clip features `(N, D)`, mean-pooled over time and space: the direction of motion must be
    in the representation itself, not in the order of per-step features (which even an untrained
    encoder's features reveal)."""
    result = extract_features(encoder, files, frames=frames, frame_step=1, pool="mean", progress=False)
    return result.features


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["speed", "quality"], help="run one part")
    parser.add_argument("--speed-preset", default="vit_small")
    parser.add_argument("--speed-size", type=int, default=128)
    parser.add_argument("--preset", default="vit_micro", help="preset pretrained in the quality part")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-videos", type=int, default=160)
    parser.add_argument("--val-videos", type=int, default=80)
    args = parser.parse_args()

    if args.only != "quality":
        print(
            f"speed: {args.speed_preset} at {args.speed_size} px, batch 2, forward + backward, s (median 3)"
        )
        print(f"{'frames':>6} {'tokens':>6} {'joint':>8} {'factorized':>10} {'joint/fact':>10}")
        patch = get_preset(args.speed_preset).encoder.patch_size
        for frames in (16, 32, 64):
            t = speed(args.speed_preset, args.speed_size, frames)
            tokens = frames // 2 * (args.speed_size // patch) ** 2
            ratio = t["joint"] / t["factorized"]
            print(
                f"{frames:6d} {tokens:6d} {t['joint']:8.3f} {t['factorized']:10.3f} {ratio:10.2f}", flush=True
            )
    if args.only != "speed":
        quality(args)


def quality(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_files, train_y = make_dataset(tmp / "train", args.train_videos, args.size, args.frames, seed=0)
        val_files, val_y = make_dataset(tmp / "val", args.val_videos, args.size, args.frames, seed=1)
        train_y, val_y = torch.tensor(train_y), torch.tensor(val_y)
        print(
            f"\nquality: {args.steps} pretraining steps of batch {args.batch} on {len(train_files)} videos; "
            f"linear probe of motion direction (4 classes, chance 25%) on {len(val_files)} held-out videos"
        )
        print(
            f"{'attention':10} {'first loss':>10} {'final loss':>10} {'seconds':>8} {'probe (trained)':>15} "
            f"{'probe (untrained)':>17}"
        )
        for kind in ("joint", "factorized"):
            config = build_config(
                {
                    "model": {
                        "preset": args.preset,
                        "num_frames": args.frames,
                        "image_size": args.size,
                        "attention": kind,
                        "temporal_mask_ratio": 0.5,
                    },
                    "data": {"frame_step": 1, "num_workers": 1, "crop_scale": [0.8, 1.0]},
                    "optim": {
                        "steps": args.steps,
                        "batch_size": args.batch,
                        "warmup_steps": args.steps // 10,
                        "lr": 1e-3,
                        "start_lr": 2e-4,
                        "ema": [0.99, 0.999],
                    },
                    "run": {"checkpoint_every": args.steps},
                }
            )
            run = tmp / f"run_{kind}"
            summary = pretrain(config, train_files, run, progress=False)
            first = read_log(run)[0]["loss"]
            trained = VideoEncoder.from_pretrained(run)
            torch.manual_seed(0)
            untrained = VideoEncoder(trained.config)
            scores = [
                probe_accuracy(
                    features(e, train_files, args.frames), train_y, features(e, val_files, args.frames), val_y
                )
                for e in (trained, untrained)
            ]
            print(
                f"{kind:10} {first:10.4f} {summary['final_loss']:10.4f} {summary['seconds']:8.1f} "
                f"{100 * scores[0]:14.1f}% {100 * scores[1]:16.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
