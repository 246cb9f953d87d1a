"""Linear layers that stay fast in bfloat16 on CPUs without native bf16 matrix instructions.

On such CPUs (x86 with AVX2 only, e.g. AMD Zen 2/3) PyTorch emulates bf16 GEMMs and runs them
about 6x slower than float32. There a bf16 layer multiplies in float32 and returns bf16: half
the memory of float32 weights and activations, float32 speed, and a more accurate result. CPUs
with native bf16 (AVX-512 BF16, AMX) and GPUs use the ordinary bf16 kernels.
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


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear`, computed in float32 for bf16 inputs on a CPU without native bf16."""
    if x.dtype is torch.bfloat16 and x.device.type == "cpu" and not cpu_has_native_bf16():
        out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(torch.bfloat16)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict keys) computed through `linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
