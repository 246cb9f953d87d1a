"""Pretraining speed: one V-JEPA training step (target forward, context encoder + predictor
forward and backward for every mask type, AdamW, EMA) on random 16-frame clips.

Prints, per preset, precision (float32, bf16 autocast) and attention (joint, factorized):
training clips/s, achieved GFLOP/s (executed FLOPs counted from the model's shapes and the
masks) against the F.linear peak of float32 and of bf16 measured in the same run, and peak
resident memory of one step (measured in a child process, see common.PeakMemory).

    python benchmarks/pretrain_speed.py
    python benchmarks/pretrain_speed.py --presets small --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

from common import PeakMemory, matmul_peak
from vjepa_world.config import mlp_hidden_dim
from vjepa_world.jepa import VJEPAModel
from vjepa_world.nn.linear import cpu_has_native_bf16
from vjepa_world.train.pretrain import param_groups

PRESETS = {"micro": ("vit_micro", 32), "tiny": ("vit_tiny", 64), "small": ("vit_small", 128)}
FRAMES = 16


def blocks_flops(n: int, dim: int, hidden: int, depth: int, attended: float) -> float:
    """Forward FLOPs of `depth` blocks over n tokens that each attend to `attended` tokens."""
    return depth * (2 * n * dim * (4 * dim + 2 * hidden) + 4 * n * attended * dim)


def encoder_flops(c, n: int, grid, full: bool) -> float:
    steps, height, width = grid
    patch = 2 * steps * height * width * c.dim * 3 * c.tubelet_size * c.patch_size**2  # always the whole clip
    hidden = mlp_hidden_dim(c.dim, c.mlp_ratio)
    # factorized on the full clip: half the blocks attend within a step, half across time;
    # joint, or factorized over a token subset (a masked dense attention): every token
    attended = (height * width + steps) / 2 if c.attention == "factorized" and full else n
    return patch + blocks_flops(n, c.dim, hidden, c.depth, attended)


def predictor_flops(p, n_context: int, n_target: int) -> float:
    n = n_context + n_target
    hidden = mlp_hidden_dim(p.dim, p.mlp_ratio)
    return (
        2 * n_context * p.encoder_dim * p.dim
        + blocks_flops(n, p.dim, hidden, p.depth, n)
        + 2 * n_target * p.dim * p.encoder_dim
    )


def step_flops(model: VJEPAModel, grid, masks) -> float:
    """Target forward on the full clip, then forward + backward (3x) of context encoder and predictor."""
    c, p = model.context_encoder.config, model.predictor.config
    total = encoder_flops(c, grid[0] * grid[1] * grid[2], grid, full=True)
    for context, target in masks:
        n_context, n_target = context.shape[1], target.shape[1]
        total += 3 * (encoder_flops(c, n_context, grid, full=False) + predictor_flops(p, n_context, n_target))
    return total * context.shape[0]


def build(preset: str, attention: str, batch: int):
    name, size = PRESETS[preset]
    torch.manual_seed(0)
    model = VJEPAModel(
        preset=name, num_frames=FRAMES, image_size=size, attention=attention, temporal_mask_ratio=0.5
    )
    optimizer = torch.optim.AdamW(param_groups([model.context_encoder, model.predictor], 0.04), lr=1e-4)
    video = torch.randn(batch, 3, FRAMES, size, size)
    masks = model.sample_masks(model.grid(video), batch, torch.Generator().manual_seed(0))
    return model, optimizer, video, masks


def train_step(model, optimizer, video, masks, precision: str) -> None:
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" else nullcontext()
    with context:
        loss, _ = model(video, masks)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.update_target(0.999)


def peak_memory(preset: str, precision: str, attention: str, batch: int) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    args = [sys.executable, __file__, "--memory-of", preset, precision, attention, str(batch)]
    return json.loads(subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout)


def measure_memory(preset: str, precision: str, attention: str, batch: int) -> None:
    model, optimizer, video, masks = build(preset, attention, batch)
    train_step(model, optimizer, video, masks, precision)  # optimizer state exists from here on
    with PeakMemory() as peak:
        train_step(model, optimizer, video, masks, precision)
    print(json.dumps(peak.megabytes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--attention", nargs="+", default=["joint", "factorized"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--memory-of", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        preset, precision, attention, batch = args.memory_of
        return measure_memory(preset, precision, attention, int(batch))
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(
        f"threads {torch.get_num_threads()}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16 {cpu_has_native_bf16()}; F.linear peak float32 {peaks['float32']:.0f}, "
        f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s; batch {args.batch} x {FRAMES} frames"
    )
    header = (
        f"{'preset':7} {'precision':9} {'attention':10} {'tokens':>6} {'s/step':>7} {'clips/s':>8} "
        f"{'GFLOP/s':>8} {'%fp32pk':>8} {'%bf16pk':>8} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        for precision in args.precisions:
            for attention in args.attention:
                model, optimizer, video, masks = build(preset, attention, args.batch)
                flops = step_flops(model, model.grid(video), masks)
                train_step(model, optimizer, video, masks, precision)  # warm-up
                times = []
                for _ in range(args.steps):
                    start = time.perf_counter()
                    train_step(model, optimizer, video, masks, precision)
                    times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                gflops = flops / seconds / 1e9
                memory = peak_memory(preset, precision, attention, args.batch)
                tokens = (
                    video.shape[2] // 2 * (video.shape[-1] // model.context_encoder.config.patch_size) ** 2
                )
                shares = [100 * gflops / peaks[dtype] for dtype in ("float32", "bfloat16")]
                rate = args.batch / seconds
                print(
                    f"{preset:7} {precision:9} {attention:10} {tokens:6d} {seconds:7.3f} {rate:8.2f} "
                    f"{gflops:8.1f} {shares[0]:7.0f}% {shares[1]:7.0f}% {memory:8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
