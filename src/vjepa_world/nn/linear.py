"""Linear layers that stay fast in bfloat16 on CPUs without native bf16 matrix instructions.

On such CPUs (x86 with AVX2 only, e.g. AMD Zen 2/3) PyTorch emulates bf16 GEMMs and runs them
about 7x slower than float32. There a layer that would multiply in bf16 (bf16 inputs, or bf16
autocast) multiplies in float32 and returns bf16: half the memory of float32 activations, float32
speed, and a more accurate result. CPUs with native bf16 (AVX-512 BF16, AMX) and GPUs use the
ordinary bf16 kernels.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or newer); False where unknown."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def emulated_bf16(x: Tensor) -> bool:
    """Whether a matmul on `x` would run in bf16 on a CPU that can only emulate it."""
    if x.device.type != "cpu" or cpu_has_native_bf16():
        return False
    autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
    return x.dtype is torch.bfloat16 or autocast


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear`; in float32 (returning bf16) where bf16 would only be emulated."""
    if emulated_bf16(x):
        with torch.autocast("cpu", enabled=False):
            out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(torch.bfloat16)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict keys) computed through `linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
