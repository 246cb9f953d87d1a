"""Multi-head self-attention with a fused qkv projection, 3D RoPE and PyTorch's SDPA kernel, and
a key/value cache for incremental block-causal decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear
from .rope import apply_rope


@dataclass
class LayerCache:
    """One layer's keys and values (already rotated) of the tokens seen so far: `(B, heads, n, hd)`."""

    keys: Tensor | None = None
    values: Tensor | None = None

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new tokens' keys and values; return all of them."""
        if self.keys is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.keys, self.values = keys, values
        return keys, values


class Attention(nn.Module):
    """Fused `qkv` Linear (rows [q; k; v], heads contiguous in each), RoPE on q and k, `proj`."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"width {dim} is not divisible by {num_heads} heads: pick a head count that divides it"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """x `(B, N, D)`; rope: cos/sin tables broadcastable to `(B, heads, N, head_dim)`;
        attn_mask: boolean `(N, N_keys)` (True = may attend) or None for full attention;
        cache: earlier tokens' keys and values, which x's tokens attend to and are appended to."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            qk = apply_rope(qkv[:2], *rope)  # rotate q and k in one pass: (2, B, heads, N, head_dim)
            q, k, v = qk[0], qk[1], qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        if cache is not None:
            k, v = cache.extend(k, v)  # (B, heads, n_cached + N, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
