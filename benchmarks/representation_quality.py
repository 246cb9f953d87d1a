"""Does pretraining learn something? Probe quality and future prediction on the built-in dataset.

1. Write the built-in temporal-reasoning dataset (600 training and 200 validation videos of 16
   frames, 64 px; cached in --work).
2. Pretrain with a recipe (default `configs/pretrain/cpu_tiny.yaml`) on the training videos, and
   time it. `--variant` picks the anti-collapse mechanism: `ema` (EMA target only), `sigreg`
   (SIGReg only, the online encoder as its own target, no EMA), `both`, or `frozen` (the target
   encoder kept at its random initialisation, no SIGReg); `recipe` keeps the file's.
3. Probe every task (direction and speed of the red object, which object bounces first, how often
   the red one bounces) on frozen tokens of the pretrained encoder, of the same architecture at
   random initialisation (same seed as pretraining starts from) and of raw pixels:
   - `attentive`: V-JEPA 2's probe on each step's tokens averaged over 4 x 4 regions, with the
     tokens' (t, h, w) added (the released probe sees a set and cannot tell a motion from its
     reverse), best of two learning rates, bf16 where the CPU has bf16 units;
   - `linear`: a linear probe on the same pooled tokens, flattened (time and layout kept);
   - pixels: a linear probe on the frames downsampled to 8 x 8 (all frames, flattened);
   - with `--supervised STEPS`, a ceiling: the same architecture from the same initialisation
     trained end to end on the labels of all four tasks (the linear probe's input, one head per
     task; the recipe's batch size and lr) for STEPS steps, then probed frozen like the others.
4. Future prediction: observe the first half of each validation clip, predict the rest; L1 per
   horizon against copying the last observed step. The clips have the recipe's frames and frame
   step: the timescale the predictor learned (a finer step asks for motions it never saw).

    python benchmarks/representation_quality.py                    # the recipe, ~30 minutes here
    python benchmarks/representation_quality.py --variant sigreg   # the same recipe, SIGReg only
    python benchmarks/representation_quality.py --supervised 550   # plus the ceiling, ~20 more minutes
    python benchmarks/representation_quality.py --set optim.steps=50 --probe-epochs 2   # smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vjepa_world import MaskedPredictor, VideoEncoder
from vjepa_world.data.datasets import VideoDataset
from vjepa_world.data.synthetic import TASKS, write_temporal_dataset
from vjepa_world.eval.future import evaluate_future, predict_future
from vjepa_world.eval.probes import pool_regions
from vjepa_world.eval.probing import Features, FeatureSettings, encode_csv, train_heads
from vjepa_world.jepa import saved_frozen_target
from vjepa_world.nn.linear import cpu_has_native_bf16
from vjepa_world.train.config import load_config
from vjepa_world.train.pretrain import pretrain

FRAMES, SIZE, REGIONS = 16, 64, 4
PROBES = ["attentive", "linear"]
VARIANTS = {
    "recipe": [],
    "ema": ["model.target=ema", "model.sigreg=0.0"],
    "sigreg": ["model.target=online", "optim.ema=null"],  # the recipe's SIGReg weight, or --sigreg
    "both": ["model.target=ema"],
    "frozen": ["model.target=frozen", "optim.ema=null", "model.sigreg=0.0"],  # fixed random target
}


def load_clips(csv: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clip of a task CSV as the probes see it (16 frames at step 1, no augmentation):
    videos `(N, 3, T, S, S)` and labels `(N,)`."""
    dataset = VideoDataset(csv, num_frames=FRAMES, frame_step=1, image_size=SIZE, train=False)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([item["video"] for item in items]), torch.tensor([item["label"] for item in items])


def pixel_features(csv: Path) -> Features:
    """Raw frames downsampled to 8x8, flattened: a probe here sees what pixels alone give."""
    video, labels = load_clips(csv)
    small = F.adaptive_avg_pool3d(video, (FRAMES, 8, 8)).flatten(1)[:, None]  # (N, 1, 3*T*64)
    return Features(small, labels, torch.arange(len(labels)))


def task_labels(csv: Path) -> torch.Tensor:
    """A task CSV's labels `(N,)`; every task's CSV lists the same videos in the same order."""
    return torch.tensor(VideoDataset(csv, num_frames=FRAMES).labels)


def relabel(features: Features, csv: Path) -> Features:
    """The same clips, another task's labels."""
    return Features(features.tokens, task_labels(csv), features.videos)


def standardized(train: Features, val: Features) -> tuple[Features, Features]:
    """Both splits with each token dimension shifted and scaled by the training split's mean and std
    (over clips and tokens): what the linear probe's BatchNorm does, for the attentive probe."""
    mean, std = train.tokens.mean((0, 1)), train.tokens.std((0, 1)).clamp_min(1e-6)
    scale = lambda f: Features((f.tokens - mean) / std, f.labels, f.videos)
    return scale(train), scale(val)


def probe_scores(features: dict, data: Path, task: str, grid, args) -> dict[str, float]:
    """Top-1 (%) of each probe on one task for one encoder's features {split: Features}."""
    train, val = (relabel(features[split], data / f"{task}_{split}.csv") for split in ("train", "val"))
    scores = {}
    if "attentive" in args.probes:
        options = {"grid": grid, "positions": True, "regions": REGIONS}
        _, summary = train_heads(
            *(standardized(train, val) if args.standardize else (train, val)),
            kind="attentive",
            lrs=(1e-3, 3e-4),
            weight_decays=(0.01,),
            epochs=args.probe_epochs,
            num_heads=args.probe_heads,
            probe_options=options,
            precision="bfloat16" if cpu_has_native_bf16() else "float32",
            progress=False,
        )
        scores["attentive"] = 100 * summary["best"]["top1"]
    if "linear" in args.probes:
        flat = lambda f: Features(pool_regions(f.tokens, grid, REGIONS).flatten(1), f.labels, f.videos)
        _, summary = train_heads(
            flat(train),
            flat(val),
            kind="linear",
            lrs=(1e-3, 1e-2),
            weight_decays=(0.01,),
            epochs=3 * args.probe_epochs,
            progress=False,
        )
        scores["linear"] = 100 * summary["best"]["top1"]
    return scores


def supervised_encoder(architecture, data: Path, steps: int, lr: float, batch_size: int, seed: int):
    """The probes' ceiling for a training budget: the architecture, from the initialisation pretraining
    starts from, trained on the labels themselves (one linear head per task on the region-pooled
    tokens, all tasks at once, AdamW with a one-cycle lr) for `steps` steps on the training clips."""
    torch.manual_seed(seed)
    encoder = VideoEncoder(architecture)
    video, _ = load_clips(data / "direction_train.csv")  # (N, 3, T, S, S)
    labels = torch.stack([task_labels(data / f"{t}_train.csv") for t in TASKS], dim=1)  # (N, tasks)
    grid = encoder.grid(video[:1])
    pooled = lambda batch: pool_regions(encoder(batch), grid, REGIONS).flatten(1)  # (B, F)
    with torch.no_grad():
        width = pooled(video[:1]).shape[1]
    heads = nn.ModuleList(nn.Linear(width, int(labels[:, i].max()) + 1) for i in range(len(TASKS)))
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="supervised ceiling", unit="step"):
        picked = torch.randint(len(video), (batch_size,), generator=generator)
        features = pooled(video[picked])
        loss = sum(F.cross_entropy(head(features), labels[picked, i]) for i, head in enumerate(heads))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return encoder.eval()


@torch.no_grad()
def prediction_spread(encoder, target, predictor, val, context_steps: int, mask_index: int) -> dict:
    """How much the predicted future tokens of a clip differ from one another (over positions and
    steps), against the true tokens': a predictor that ignores positions predicts one vector."""
    video = torch.stack([val[i]["video"] for i in range(min(48, len(val)))])
    predicted, _, truth = predict_future(encoder, target, predictor, video, context_steps, mask_index)
    deviation = lambda tokens: (tokens - tokens.mean((1, 2), keepdim=True)).abs().mean().item()
    return {"predicted": deviation(predicted), "true": deviation(truth)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/pretrain/cpu_tiny.yaml", help="the pretraining recipe")
    parser.add_argument("--variant", choices=list(VARIANTS), default="recipe")
    parser.add_argument("--sigreg", type=float, help="SIGReg weight of the sigreg/both variants")
    parser.add_argument(
        "--set", action="append", default=[], help="more recipe overrides (section.key=value)"
    )
    parser.add_argument("--work", default="runs/representation_quality", help="dataset, runs and caches")
    parser.add_argument("--train-videos", type=int, default=600)
    parser.add_argument("--val-videos", type=int, default=200)
    parser.add_argument(
        "--probes", nargs="+", choices=["attentive", "linear"], default=["attentive", "linear"]
    )
    parser.add_argument("--probe-epochs", type=int, default=20)
    parser.add_argument(
        "--probe-heads", type=int, help="attentive probe's heads (default: the encoder's own head count)"
    )
    parser.add_argument(
        "--standardize",
        action="store_true",
        help="standardise each token dimension (training-split statistics) before the attentive probe",
    )
    parser.add_argument(
        "--supervised", type=int, metavar="STEPS", help="also train the ceiling on the labels for STEPS steps"
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()

    data = work / "data"
    write_temporal_dataset(data, train=args.train_videos, val=args.val_videos, frames=FRAMES, size=SIZE)
    overrides = [*VARIANTS[args.variant], *args.set]
    if args.sigreg is not None:
        overrides.append(f"model.sigreg={args.sigreg}")
    config = load_config(args.config, overrides)
    if args.variant in ("sigreg", "both") and not config.model.sigreg:
        parser.error(f"the {args.variant} variant needs a SIGReg weight: pass --sigreg W")
    key = hashlib.sha256(json.dumps([args.config, config.to_dict()], sort_keys=True).encode()).hexdigest()[
        :10
    ]
    run = work / f"run_{Path(args.config).stem}_{args.variant}_{key}"
    if not (run / "summary.json").exists():
        pretrain(config, data / "direction_train.csv", run, resume=(run / "checkpoint.pt").exists())
    seconds = json.loads((run / "summary.json").read_text())["seconds"]
    print(f"pretrained {config.optim.steps} steps in {seconds:.0f} s ({run})", flush=True)

    pretrained = VideoEncoder.from_pretrained(run).eval()
    torch.manual_seed(config.run.seed)  # the initialisation pretraining started from
    untrained = VideoEncoder(pretrained.config).eval()
    settings = FeatureSettings(frames=FRAMES, frame_step=1)
    grid = pretrained.grid(torch.empty(1, 3, FRAMES, SIZE, SIZE))
    args.probe_heads = args.probe_heads or pretrained.config.num_heads  # divides the width
    encoders = {"pretrained": pretrained, "random init": untrained}
    if args.supervised:
        optim = config.optim
        encoders["supervised"] = supervised_encoder(
            pretrained.config, data, args.supervised, optim.lr, optim.batch_size, config.run.seed
        )
        print(f"supervised: {args.supervised} steps ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = {}
    for name, encoder in encoders.items():
        features = {
            split: encode_csv(
                encoder, data / f"direction_{split}.csv", settings, cache_dir=work / "cache", progress=False
            )
            for split in ("train", "val")
        }
        for task in TASKS:
            rows.setdefault(task, {})[name] = probe_scores(features, data, task, grid, args)
            print(f"{task} {name}: {rows[task][name]} ({time.perf_counter() - started:.0f} s)", flush=True)
    for task in TASKS:
        train, val = (pixel_features(data / f"{task}_{split}.csv") for split in ("train", "val"))
        _, summary = train_heads(
            train, val, kind="linear", lrs=(1e-3, 1e-2), weight_decays=(0.01,), epochs=30, progress=False
        )
        rows[task]["pixels"] = 100 * summary["best"]["top1"]

    print(f"\ntop-1 % ({args.variant}; chance: direction 12.5, speed 50, first_event 50, bounces 33.3)")
    ceiling = "supervised" in encoders
    print(
        f"{'task':12} {'probe':9} {'pretrained':>10} {'random init':>11} {'gain':>6} {'pixels':>7}"
        + (f" {'supervised':>10} {'its gain':>8}" if ceiling else "")
    )
    gains = {(name, probe): [] for name in encoders if name != "random init" for probe in args.probes}
    for task in TASKS:
        for probe in args.probes:
            scores = {name: rows[task][name][probe] for name in encoders}
            for name in encoders:
                if name != "random init":
                    gains[name, probe].append(scores[name] - scores["random init"])
            line = (
                f"{task:12} {probe:9} {scores['pretrained']:10.1f} {scores['random init']:11.1f} "
                f"{gains['pretrained', probe][-1]:+6.1f} {rows[task]['pixels']:7.1f}"
            )
            if ceiling:
                line += f" {scores['supervised']:10.1f} {gains['supervised', probe][-1]:+8.1f}"
            print(line)
    for (name, probe), values in gains.items():
        print(f"mean gain over the tasks, {name}, {probe} probe: {sum(values) / len(values):+.1f} points")

    predictor = MaskedPredictor.from_pretrained(run).eval()
    future_index = [spec.name.startswith("future") for spec in config.model.mask_specs()].index(True)
    # the clips pretraining saw (its frames and frame step): the timescale the predictor learned
    clip_frames = pretrained.config.num_frames
    val = VideoDataset(
        data / "direction_val.csv",
        num_frames=clip_frames,
        frame_step=config.data.frame_step,
        image_size=SIZE,
        train=False,
    )
    batches = (
        torch.stack([val[i]["video"] for i in range(start, min(start + 16, len(val)))])
        for start in range(0, len(val), 16)
    )
    steps = pretrained.grid(torch.empty(1, 3, clip_frames, SIZE, SIZE))[0]
    target = saved_frozen_target(run)  # what the predictor predicts: a frozen target, else the encoder
    target = pretrained if target is None else target
    errors = evaluate_future(pretrained, target, predictor, batches, steps // 2, future_index)
    print(f"\nfuture prediction, {steps // 2} of {steps} tubelet steps observed, L1 per horizon:")
    for method, values in errors.l1.items():
        print(f"{method:14} " + " ".join(f"{v:.4f}" for v in values))
    better = all(p < c for p, c in zip(errors.l1["predictor"], errors.l1["copy last"], strict=True))
    print(f"predictor below copy-last at every horizon: {better}")
    spread = prediction_spread(pretrained, target, predictor, val, steps // 2, future_index)
    print(
        "mean |deviation| from the clip's mean token over the unobserved steps, predicted / true: "
        f"{spread['predicted']:.4f} / {spread['true']:.4f} (near 0 predicted: one vector per clip, "
        "the predictor reads no positions)"
    )
    total = time.perf_counter() - started
    print(f"total {total:.0f} s (pretraining {seconds:.0f} s)")
    if args.out:
        result = {
            "config": args.config,
            "variant": args.variant,
            "overrides": overrides,
            "pretraining_seconds": seconds,
            "total_seconds": round(total),
            "top1": rows,
            "future_l1": errors.l1,
            "future_spread": spread,
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
