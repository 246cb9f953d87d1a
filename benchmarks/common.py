"""Measuring helpers shared by the benchmarks: matmul peak and peak resident memory."""

from __future__ import annotations

import threading
import time

import torch


def matmul_peak(dtype: torch.dtype, tokens: int = 2048, dim: int = 1024, repeats: int = 3) -> float:
    """Best GFLOP/s of PyTorch's own `F.linear` in `dtype` at a ViT-L MLP's shape on this machine."""
    x, w = torch.randn(tokens, dim, dtype=dtype), torch.randn(4 * dim, dim, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - start)
    return 2 * tokens * dim * 4 * dim / best / 1e9


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak resident set size above the level at entry, sampled every millisecond. Run it in a
    process started with MALLOC_MMAP_THRESHOLD_ fixed, so freed large blocks leave the RSS."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def megabytes(self) -> float:
        return (self.peak - self.base) / 2**20
