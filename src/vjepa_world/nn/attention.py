"""Multi-head self-attention with a fused qkv projection, 3D RoPE and PyTorch's SDPA kernel."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear
from .rope import apply_rope


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
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        """x `(B, N, D)`; rope: cos/sin tables broadcastable to `(B, heads, N, head_dim)`;
        attn_mask: boolean `(N, N)` (True = may attend) or None for full attention."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            qk = apply_rope(qkv[:2], *rope)  # rotate q and k in one pass: (2, B, heads, N, head_dim)
            q, k, v = qk[0], qk[1], qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
