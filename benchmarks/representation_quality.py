"""Does pretraining learn something? Probe quality and future prediction on the built-in dataset.

1. Write the built-in temporal-reasoning dataset (cached in --work).
2. Pretrain an encoder (default vit_tiny, 16 frames of 64 px) with the V-JEPA objective plus a
   future-prediction mask, for a fixed number of steps.
3. Probe each task (direction and speed of motion, which object bounces first, bounce count) on
   frozen features with an attentive probe: the pretrained encoder, the same encoder randomly
   initialised, and a pixel baseline (a linear probe on 8x8-downsampled raw frames).
4. Future prediction: observe half the clip, predict the rest; L1 per horizon against copying
   the last observed step.

    python benchmarks/representation_quality.py              # about 15-20 minutes on 2 cores
    python benchmarks/representation_quality.py --steps 50   # a quick smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vjepa_world import VideoEncoder
from vjepa_world.data.datasets import VideoDataset
from vjepa_world.data.synthetic import TASKS, write_temporal_dataset
from vjepa_world.eval.future import evaluate_future
from vjepa_world.eval.probing import Features, FeatureSettings, encode_csv, train_heads
from vjepa_world.nn import MaskedPredictor
from vjepa_world.train.config import build_config
from vjepa_world.train.pretrain import pretrain


def pixel_features(csv: Path, frames: int, size: int) -> Features:
    """Raw frames downsampled to 8x8, flattened: a probe here sees what pixels alone give."""
    dataset = VideoDataset(csv, num_frames=frames, frame_step=1, image_size=size, train=False)
    items = [dataset[i] for i in range(len(dataset))]
    video = torch.stack([item["video"] for item in items])  # (N, 3, T, S, S)
    small = F.adaptive_avg_pool3d(video, (frames, 8, 8)).flatten(1)[:, None]  # (N, 1, 3*T*64)
    labels = torch.tensor([item["label"] for item in items])
    return Features(small, labels, torch.arange(len(items)))


def pooled(features: Features, grid: tuple[int, int, int], regions: int = 2) -> Features:
    """Tokens averaged over `regions x regions` spatial blocks per tubelet step: (N, T' * r * r, D).
    Keeps time and coarse layout, and makes the attentive probe 16x cheaper on this CPU."""
    steps, height, width = grid
    tokens = features.tokens.view(-1, steps, height, width, features.tokens.shape[-1]).permute(0, 1, 4, 2, 3)
    tokens = F.adaptive_avg_pool2d(tokens.flatten(0, 1), regions)  # (N*T', D, r, r)
    tokens = tokens.view(-1, steps, tokens.shape[1], regions * regions).permute(0, 1, 3, 2).flatten(1, 2)
    return Features(tokens.contiguous(), features.labels, features.videos)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="runs/representation_quality", help="dataset, run and caches")
    parser.add_argument("--preset", default="vit_tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--train-videos", type=int, default=600)
    parser.add_argument("--val-videos", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--ema", type=float, nargs=2, default=[0.99, 0.999], help="target momentum, first -> last"
    )
    parser.add_argument("--probe-epochs", type=int, default=10)
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()

    data = work / "data"
    write_temporal_dataset(
        data, train=args.train_videos, val=args.val_videos, frames=args.frames, size=args.size
    )
    run = work / f"run_{args.preset}_{args.steps}_lr{args.lr:g}_ema{args.ema[0]:g}-{args.ema[1]:g}"
    if not (run / "summary.json").exists():
        config = build_config(
            {
                "model": {
                    "preset": args.preset,
                    "num_frames": args.frames,
                    "image_size": args.size,
                    "temporal_mask_ratio": 0.5,
                },
                "data": {"frame_step": 1, "num_workers": 2, "crop_scale": [0.6, 1.0]},
                "optim": {
                    "steps": args.steps,
                    "batch_size": args.batch,
                    "warmup_steps": args.steps // 10,
                    "decay_steps": args.steps // 5,
                    "lr": args.lr,
                    "start_lr": args.lr / 5,
                    "ema": args.ema,
                },
                "run": {"checkpoint_every": max(args.steps // 4, 1)},
            }
        )
        pretrain(config, data / "direction_train.csv", run, resume=(run / "checkpoint.pt").exists())
    pretrained = VideoEncoder.from_pretrained(run).eval()
    torch.manual_seed(0)
    untrained = VideoEncoder(pretrained.config).eval()
    print(f"pretrained {args.steps} steps in {time.perf_counter() - started:.0f} s")

    settings = FeatureSettings(frames=args.frames, frame_step=1)
    grid = pretrained.grid(torch.empty(1, 3, args.frames, args.size, args.size))
    features = {  # every task's CSV lists the same videos in the same order: encode once per encoder
        (name, split): pooled(
            encode_csv(
                encoder, data / f"direction_{split}.csv", settings, cache_dir=work / "cache", progress=False
            ),
            grid,
        )
        for name, encoder in (("pretrained", pretrained), ("random init", untrained))
        for split in ("train", "val")
    }
    rows = []
    for task in TASKS:
        labels = {
            split: torch.tensor(VideoDataset(data / f"{task}_{split}.csv", num_frames=args.frames).labels)
            for split in ("train", "val")
        }
        scores = {}
        for name in ("pretrained", "random init"):
            train, val = (
                Features(features[name, split].tokens, labels[split], features[name, split].videos)
                for split in ("train", "val")
            )
            _, summary = train_heads(
                train,
                val,
                kind="attentive",
                lrs=(1e-3,),
                weight_decays=(0.01,),
                epochs=args.probe_epochs,
                num_heads=3,
                progress=False,
            )
            scores[name] = summary["best"]["top1"]
        train_csv, val_csv = data / f"{task}_train.csv", data / f"{task}_val.csv"
        train, val = (
            pixel_features(train_csv, args.frames, args.size),
            pixel_features(val_csv, args.frames, args.size),
        )
        _, summary = train_heads(
            train,
            val,
            kind="linear",
            lrs=(1e-3, 1e-2),
            weight_decays=(0.01,),
            epochs=args.probe_epochs * 3,
            progress=False,
        )
        scores["pixels"] = summary["best"]["top1"]
        rows.append((task, len(TASKS[task]), scores))
        print(f"{task}: {scores} ({time.perf_counter() - started:.0f} s)", flush=True)

    print(f"\n{'task':12} {'classes':>7} {'pretrained':>10} {'random init':>11} {'pixels':>7} {'gain':>6}")
    for task, classes, s in rows:
        gain = 100 * (s["pretrained"] - s["random init"])
        print(
            f"{task:12} {classes:7d} {100 * s['pretrained']:9.1f}% {100 * s['random init']:10.1f}% "
            f"{100 * s['pixels']:6.1f}% {gain:+11.1f}"
        )

    predictor = MaskedPredictor.from_pretrained(run).eval()
    val = VideoDataset(
        data / "direction_val.csv", num_frames=args.frames, frame_step=1, image_size=args.size, train=False
    )
    batches = (
        torch.stack([val[i]["video"] for i in range(start, min(start + 16, len(val)))])
        for start in range(0, len(val), 16)
    )
    steps = args.frames // 2
    errors = evaluate_future(pretrained, pretrained, predictor, batches, context_steps=steps // 2)
    print(f"\nfuture prediction, {steps // 2} of {steps} tubelet steps observed, L1 per horizon:")
    for method, values in errors.l1.items():
        print(f"{method:14} " + " ".join(f"{v:.4f}" for v in values))
    better = all(p < c for p, c in zip(errors.l1["predictor"], errors.l1["copy last"], strict=True))
    print(f"predictor below copy-last at every horizon: {better}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
