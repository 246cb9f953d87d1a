"""The pre-norm transformer block shared by the encoder and both predictors."""

from __future__ import annotations

from torch import Tensor, nn

from ..config import mlp_hidden_dim
from .attention import Attention, LayerCache
from .linear import Linear


class MLP(nn.Module):
    """fc1 -> exact-erf GELU -> fc2."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = mlp_hidden_dim(dim, mlp_ratio)
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """`x + attn(norm1(x))`, then `x + mlp(norm2(x))`."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True, norm_eps: float = 1e-6
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, attn_mask, cache)
        return x + self.mlp(self.norm2(x))
