"""Probes on frozen encoder features: the released attentive probe, a linear probe, and kNN.

The attentive probe is V-JEPA 2's evaluation head: self-attention blocks over the tokens (no RoPE,
LayerNorm eps 1e-5), then a cross-attention block where one learnable query attends to them
(q Linear, fused kv Linear, no output projection, residual into the query, MLP), then a Linear
classifier. Our key names are the released ones, so released probe checkpoints load as they are.

Two options for small encoders and CPUs, neither of which adds a parameter (released probe files
load and compute exactly as before): `positions` adds a fixed sin-cos embedding of each token's
(t, h, w) to the tokens, since a RoPE-only encoder's tokens barely say where and when they are and
the released probe sees them as a set (it cannot tell a motion from its reverse); `regions`
averages each time step's tokens over a coarse spatial grid first, the cheaper token path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import load_state, read_checkpoint_file, read_hf_directory
from ..config import mlp_hidden_dim
from ..nn.block import MLP, Block
from ..nn.linear import Linear


@dataclass
class ProbeConfig:
    dim: int
    num_classes: int
    num_heads: int = 16
    depth: int = 4  # self-attention blocks + the cross-attention block (released: 3 + 1)
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    qkv_bias: bool = True
    # token grid (T', H', W') of the inputs (several layers' tokens may follow each other), needed by:
    grid: tuple[int, int, int] | None = None
    positions: bool = False  # add a fixed sin-cos embedding of (t, h, w); False: a set (released)
    regions: int | None = None  # average each step's tokens over regions x regions blocks first

    def __post_init__(self):
        if self.grid is None and (self.positions or self.regions):
            raise ValueError("probe positions and regions need the token grid (T', H', W') of the inputs")
        if self.grid is not None:
            self.grid = tuple(self.grid)

    @property
    def pooled_grid(self) -> tuple[int, int, int] | None:
        """The grid the probe's blocks see: the input grid, or (T', regions, regions)."""
        if self.grid is None or not self.regions:
            return self.grid
        return (self.grid[0], self.regions, self.regions)

    def options(self) -> dict:
        """What our probe files record beside the weights (released files hold none of it)."""
        return {
            "num_heads": self.num_heads,
            "grid": self.grid,
            "positions": self.positions,
            "regions": self.regions,
        }


class CrossAttention(nn.Module):
    """Queries attend to tokens; no output projection (as released)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.kv = Linear(dim, 2 * dim, bias=qkv_bias)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        batch, n_queries, dim = queries.shape
        q = self.q(queries).view(batch, n_queries, self.num_heads, -1).transpose(1, 2)  # (B, h, n, hd)
        k, v = self.kv(tokens).view(batch, tokens.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, n_queries, dim)


class CrossAttentionBlock(nn.Module):
    """`q + xattn(q, norm1(x))`, then `q + mlp(norm2(q))`: the tokens are normed, the query is not."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm_eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        queries = queries + self.xattn(queries, self.norm1(tokens))
        return queries + self.mlp(self.norm2(queries))


def position_table(grid: tuple[int, int, int], dim: int) -> Tensor:
    """Fixed sin-cos embedding `(T'H'W', dim)` of a token grid, raster order: a third of the dims
    (an even number) for each of t, h and w, sines then cosines at frequencies 10000^(-j/n); the
    dims left over are zero."""
    per_axis = dim // 6  # frequencies per axis
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in grid), indexing="ij")
    frequencies = 1.0 / 10000 ** (torch.arange(per_axis, dtype=torch.float32) / max(per_axis, 1))
    parts = []
    for position in axes:
        angles = position.flatten()[:, None] * frequencies  # (N, per_axis)
        parts += [angles.sin(), angles.cos()]
    table = torch.cat(parts, dim=1)
    return F.pad(table, (0, dim - table.shape[1]))


class AttentivePooler(nn.Module):
    def __init__(self, c: ProbeConfig):
        super().__init__()
        self.config = c
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.blocks = nn.ModuleList(
            Block(c.dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.norm_eps) for _ in range(c.depth - 1)
        )
        self.cross_attention_block = CrossAttentionBlock(
            c.dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.norm_eps
        )

    def forward(self, tokens: Tensor) -> Tensor:
        c = self.config
        if c.regions:
            tokens = pool_regions(tokens, c.grid, c.regions)
        if c.positions:  # the same positions for each layer's tokens
            table = position_table(c.pooled_grid, tokens.shape[-1]).to(tokens)
            tokens = tokens + table.repeat(tokens.shape[1] // len(table), 1)
        for block in self.blocks:
            tokens = block(tokens)  # no RoPE: positions, if any, are in the tokens
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)
        return self.cross_attention_block(queries, tokens)[:, 0]  # (B, D)


class AttentiveProbe(nn.Module):
    """tokens `(B, N, D)` -> logits `(B, num_classes)`."""

    def __init__(self, config: ProbeConfig):
        super().__init__()
        self.config = config
        self.pooler = AttentivePooler(config)
        self.linear = Linear(config.dim, config.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pooler.query_tokens, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.linear(self.pooler(tokens))

    @classmethod
    def from_released(cls, path: str | Path, index: int = 0, num_heads: int | None = None) -> AttentiveProbe:
        """A released V-JEPA 2 probe checkpoint: `classifiers` (a list, one per trained head; pick
        `index`) with `module.` prefixes. Widths come from the weights; the head count (16 in the
        released probes) is not in released files; ours record it."""
        checkpoint = read_checkpoint_file(path)
        heads = checkpoint.get("classifiers") if isinstance(checkpoint, dict) else None
        if not heads:
            raise ValueError(f"{path} holds no 'classifiers' entry: not a released V-JEPA 2 probe checkpoint")
        if not 0 <= index < len(heads):
            raise ValueError(f"{path} holds {len(heads)} classifiers; index {index} is out of range")
        state = {re.sub(r"^(module\.)+", "", k): v for k, v in heads[index].items()}
        num_heads = num_heads or checkpoint.get("num_heads", 16)  # files we write record it
        options = {k: checkpoint[k] for k in ("grid", "positions", "regions") if checkpoint.get(k)}
        return cls._from_state(state, path, num_heads=num_heads, norm_eps=1e-5, **options)

    @classmethod
    def from_transformers(
        cls, source: str | Path | dict[str, Tensor], config: dict | None = None
    ) -> AttentiveProbe:
        """The pooler + classifier of transformers' `VJEPA2ForVideoClassification`, from its
        directory (or a state dict and its config dict). Faithfully: its head count is the
        encoder's (`num_attention_heads`, e.g. 22 for ViT-g where the released probes use 16) and
        its LayerNorm eps is `layer_norm_eps` (1e-6, released probes 1e-5)."""
        if isinstance(source, dict):
            state = source
        else:
            config, state = read_hf_directory(Path(source))
        if config is None:
            raise ValueError("pass the model's config dict with a state dict")
        return cls._from_state(
            hf_probe_to_ours(state),
            source,
            num_heads=config["num_attention_heads"],
            norm_eps=config["layer_norm_eps"],
        )

    @classmethod
    def _from_state(
        cls, state: dict[str, Tensor], source, *, num_heads: int, norm_eps: float, **options
    ) -> AttentiveProbe:
        if "pooler.query_tokens" not in state or "linear.weight" not in state:
            raise ValueError(
                f"{source} holds no attentive probe weights (pooler.query_tokens, linear.weight)"
            )
        num_classes, dim = state["linear.weight"].shape
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"pooler\.blocks\.(\d+)\.", k))}
        hidden = state["pooler.cross_attention_block.mlp.fc1.weight"].shape[0]
        config = ProbeConfig(
            dim=dim,
            num_classes=num_classes,
            num_heads=num_heads,
            depth=len(blocks) + 1,
            mlp_ratio=hidden / dim,
            norm_eps=norm_eps,
            qkv_bias="pooler.cross_attention_block.xattn.q.bias" in state,
            **options,
        )
        if mlp_hidden_dim(dim, config.mlp_ratio) != hidden:
            raise ValueError(f"{source}: MLP width {hidden} is not representable for width {dim}")
        probe = cls(config)
        load_state(probe, state, source)
        return probe


# transformers' VJEPA2ForVideoClassification names -> ours (inside `pooler.`; `classifier` -> `linear`)
HF_PROBE_RENAMES = [
    ("self_attention_layers.", "blocks."),
    ("cross_attention_layer.", "cross_attention_block."),
    ("layer_norm1.", "norm1."),
    ("layer_norm2.", "norm2."),
    ("self_attn.out_proj.", "attn.proj."),
    ("cross_attn.q_proj.", "xattn.q."),
]


def hf_probe_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Pooler/classifier keys of VJEPA2ForVideoClassification -> ours; q/k/v fused, k/v fused."""
    out = {}
    for key, value in state.items():
        if key.startswith("classifier."):
            out["linear." + key[len("classifier.") :]] = value
            continue
        if not key.startswith("pooler."):
            continue  # the encoder
        if ".self_attn.q_proj." in key:
            parts = [state[key.replace(".q_proj.", f".{n}_proj.")] for n in ("q", "k", "v")]
            key, value = key.replace(".self_attn.q_proj.", ".attn.qkv."), torch.cat(parts)
        elif ".cross_attn.k_proj." in key:
            parts = [state[key.replace(".k_proj.", f".{n}_proj.")] for n in ("k", "v")]
            key, value = key.replace(".cross_attn.k_proj.", ".xattn.kv."), torch.cat(parts)
        elif re.search(r"\.(self_attn\.[kv]_proj|cross_attn\.v_proj)\.", key):
            continue  # fused above
        for old, new in HF_PROBE_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


class LinearProbe(nn.Module):
    """Mean-pooled tokens -> non-affine BatchNorm -> Linear: the usual linear-probing head."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.linear = Linear(dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        features = tokens.mean(dim=1) if tokens.ndim == 3 else tokens  # (B, D)
        return self.linear(self.norm(features))


def pool_regions(tokens: Tensor, grid: tuple[int, int, int], regions: int) -> Tensor:
    """Tokens `(B, L * T'H'W', D)` (L layers' tokens one after the other) averaged over
    `regions x regions` spatial blocks of each time step: `(B, L * T' * regions^2, D)` on the grid
    (T', regions, regions). Keeps time and the coarse layout; the probe's cost falls ~H'W'/regions^2."""
    steps, height, width = grid
    batch, count, dim = tokens.shape
    if count % (steps * height * width) or height % regions or width % regions:
        raise ValueError(
            f"{count} tokens on a {steps}x{height}x{width} grid cannot be pooled to {regions}x{regions} "
            f"regions: pick regions dividing {height} and {width}"
        )
    blocks = tokens.reshape(-1, regions, height // regions, regions, width // regions, dim)
    return blocks.mean(dim=(2, 4)).reshape(batch, -1, dim)  # (B, L * T' * regions^2, D)


def knn_scores(
    train: Tensor,
    train_labels: Tensor,
    query: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> Tensor:
    """Class scores `(Q, C)` by cosine-similarity-weighted votes of the k nearest training
    features (exp(sim / temperature) weights, as in DINO's kNN evaluation)."""
    train, query = F.normalize(train.flatten(1).float(), dim=1), F.normalize(query.flatten(1).float(), dim=1)
    similarity, index = (query @ train.T).topk(min(k, len(train)), dim=1)  # (Q, k)
    votes = F.one_hot(train_labels[index], num_classes).float() * (similarity / temperature).exp()[..., None]
    return votes.sum(dim=1)


def multi_layer_tokens(encoder, video: Tensor, layers: list[int]) -> Tensor:
    """Tokens of several encoder blocks, each normalised, concatenated along the token axis
    `(B, N * len(layers), D)`, as upstream feeds its probes (e.g. for Diving-48)."""
    return torch.cat(encoder(video, out_layers=layers), dim=1)


def average_views(probe: nn.Module, views: list[Tensor]) -> Tensor:
    """Multi-clip, multi-view test-time averaging: the mean of the softmaxes over views."""
    return torch.stack([probe(tokens).softmax(dim=-1) for tokens in views]).mean(dim=0)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int) -> float:
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean().item()
