"""Encoder speed: ours against transformers' VJEPA2Model on the same weights, in one run.

For each config and dtype it times one forward per candidate, interleaved over the repeats
(medians), and prints time per clip, the ratio ours/theirs, peak resident memory above the
baseline while the forward ran, and achieved GFLOP/s against this machine's matmul peak measured
in the same run for that dtype. bfloat16 candidates: ours with `.to(torch.bfloat16)`; theirs
both cast and under autocast (the better one is the reference).

    python benchmarks/encoder_speed.py                 # small config and ViT-L 16 x 256 px
    python benchmarks/encoder_speed.py --configs small --repeats 5
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
from transformers import VJEPA2Config, VJEPA2Model

from common import PeakMemory, matmul_peak
from vjepa_world import EncoderConfig, VideoEncoder
from vjepa_world.checkpoints import from_hf
from vjepa_world.config import mlp_hidden_dim
from vjepa_world.nn.linear import cpu_has_native_bf16

CONFIGS = {
    "small": EncoderConfig(dim=384, depth=12, num_heads=6, image_size=128, num_frames=16),
    "vit_large": EncoderConfig(dim=1024, depth=24, num_heads=16, image_size=256, num_frames=16),
}


def encoder_flops(c: EncoderConfig) -> float:
    """Multiply-adds x 2 of one clip's forward at the config's size."""
    n = (c.num_frames // c.tubelet_size) * (c.image_size // c.patch_size) ** 2
    hidden = mlp_hidden_dim(c.dim, c.mlp_ratio)
    per_block = 2 * n * c.dim * (3 * c.dim + c.dim + 2 * hidden) + 4 * n * n * c.dim
    return 2 * n * c.dim * 3 * c.tubelet_size * c.patch_size**2 + c.depth * per_block


def hf_twin(c: EncoderConfig) -> VJEPA2Model:
    config = VJEPA2Config(
        patch_size=c.patch_size,
        crop_size=c.image_size,
        frames_per_clip=c.num_frames,
        hidden_size=c.dim,
        num_attention_heads=c.num_heads,
        num_hidden_layers=c.depth,
        mlp_ratio=c.mlp_ratio,
        pred_num_hidden_layers=1,
        attn_implementation="sdpa",
    )
    return VJEPA2Model(config).eval()


def candidates(c: EncoderConfig, dtype: torch.dtype):
    """(name, model forward, input) triples on shared weights."""
    theirs = hf_twin(c)
    ours = VideoEncoder(c)
    ours.load_state_dict(from_hf(theirs.state_dict(), "encoder"))
    ours.eval()
    video = torch.randn(1, 3, c.num_frames, c.image_size, c.image_size)
    hf_video = video.transpose(1, 2).contiguous()
    if dtype == torch.float32:
        return (
            [
                ("ours", ours, video, nullcontext),
                ("transformers", lambda v: theirs.get_vision_features(v), hf_video, nullcontext),
            ],
            ours,
            video,
        )
    ours_bf16 = VideoEncoder(c).to(torch.bfloat16).eval()
    ours_bf16.load_state_dict(ours.state_dict())
    theirs_bf16 = hf_twin(c).to(torch.bfloat16)
    theirs_bf16.load_state_dict(theirs.state_dict())
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return (
        [
            ("ours", ours_bf16, video.to(torch.bfloat16), nullcontext),
            (
                "transformers cast",
                lambda v: theirs_bf16.get_vision_features(v),
                hf_video.to(torch.bfloat16),
                nullcontext,
            ),
            ("transformers autocast", lambda v: theirs.get_vision_features(v), hf_video, autocast),
        ],
        ours,
        video,
    )


@torch.inference_mode()
def run(name: str, dtype: torch.dtype, repeats: int) -> list[dict]:
    c = CONFIGS[name]
    entries, reference, video = candidates(c, dtype)
    times = {label: [] for label, *_ in entries}
    memory = peak_memory(name, dtype)
    outputs = {}
    for label, model, x, context in entries:  # warm-up, and outputs for the error column
        with context():
            outputs[label] = model(x).float()
    for _ in range(repeats):
        for label, model, x, context in entries:
            with context():
                start = time.perf_counter()
                model(x)
                times[label].append(time.perf_counter() - start)
    full = reference(video)
    flops = encoder_flops(c)
    rows = []
    for label, *_ in entries:
        seconds = statistics.median(times[label])
        error = ((outputs[label] - full).norm() / full.norm()).item()
        rows.append(
            {
                "config": name,
                "dtype": str(dtype).split(".")[1],
                "model": label,
                "seconds": seconds,
                "memory_mb": memory[label],
                "gflops": flops / seconds / 1e9,
                "rel_error": error,
            }
        )
    best_theirs = min(r["seconds"] for r in rows if r["model"] != "ours")
    for r in rows:
        r["ratio"] = r["seconds"] / best_theirs
    return rows


def peak_memory(name: str, dtype: torch.dtype) -> dict[str, float]:
    """Peak MB above baseline of one forward per candidate, measured in a child process whose
    glibc returns every large block at free (a fixed mmap threshold), so each peak is real.
    Kept out of the timing runs, where that setting would slow every allocation."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    args = [sys.executable, __file__, "--memory-of", name, str(dtype).split(".")[1]]
    return json.loads(subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout)


@torch.inference_mode()
def measure_memory(name: str, dtype: torch.dtype) -> None:
    entries, _, _ = candidates(CONFIGS[name], dtype)
    peaks = {}
    for label, model, x, context in entries:
        with context(), PeakMemory() as peak:
            model(x)
        peaks[label] = peak.megabytes
    print(json.dumps(peaks))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-of", nargs=2, metavar=("CONFIG", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        return measure_memory(args.memory_of[0], getattr(torch, args.memory_of[1]))
    torch.manual_seed(0)
    peaks = {name: matmul_peak(getattr(torch, name)) for name in args.dtypes}
    print(
        f"threads {torch.get_num_threads()}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16 {cpu_has_native_bf16()}; F.linear peak "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    )
    header = (
        f"{'config':10} {'dtype':9} {'model':22} {'s/clip':>8} {'ours/best':>9} {'peak MB':>8} "
        f"{'GFLOP/s':>8} {'% peak':>7} {'rel err':>8}"
    )
    print(header)
    print("-" * len(header))
    for name in args.configs:
        for dtype_name in args.dtypes:
            for r in run(name, getattr(torch, dtype_name), args.repeats):
                print(
                    f"{r['config']:10} {r['dtype']:9} {r['model']:22} {r['seconds']:8.3f} {r['ratio']:9.2f} "
                    f"{r['memory_mb']:8.0f} {r['gflops']:8.0f} {100 * r['gflops'] / peaks[dtype_name]:6.0f}% "
                    f"{r['rel_error']:8.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
