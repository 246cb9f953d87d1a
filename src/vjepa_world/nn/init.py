"""Weight initialisation of the released recipe: truncated normal (std 0.02), zero biases, unit
LayerNorms, and each block's output projections scaled by 1/sqrt(2 * layer number)."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def rescale_blocks(blocks: nn.ModuleList) -> None:
    for layer, block in enumerate(blocks, start=1):
        block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
        block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
