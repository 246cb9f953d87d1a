"""MaskedPredictor: the V-JEPA 2 pretraining predictor (context tokens + mask tokens -> targets)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import PredictorConfig
from .block import Block
from .init import init_weights, rescale_blocks
from .linear import Linear
from .pretrained import PretrainedMixin
from .rope import grid_positions, rope_tables
from .sincos import sincos_embedding
from .tokens import check_indices, gather_tokens, latest_same_position


class MaskedPredictor(PretrainedMixin, nn.Module):
    """Predicts the encoder's tokens at target positions from the context tokens.

    The context is embedded to the predictor's width, a learnable mask token is placed at every
    target position (plus a fixed sine-cosine position embedding on every token with
    `config.pos_embed`), the joint sequence is sorted by grid position and run through RoPE blocks
    (positions decoded on the predictor's own grid, `image_size / patch_size`), then un-sorted;
    only the target part is normalised-and-projected back to the encoder's width. With
    `config.copy_last` the prediction is a residual on the last earlier context token at the same
    place (see `latest_same_position`).
    """

    checkpoint_role = "predictor"

    def __init__(self, config: PredictorConfig | None = None, **overrides):
        super().__init__()
        config = dataclasses.replace(config or PredictorConfig(), **overrides)
        self.config = config
        self.predictor_embed = Linear(config.encoder_dim, config.dim)
        self.mask_tokens = nn.ParameterList(
            torch.zeros(1, 1, config.dim) for _ in range(config.num_mask_tokens)
        )
        self.predictor_blocks = nn.ModuleList(
            Block(config.dim, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.predictor_proj = Linear(config.dim, config.encoder_dim)
        self.gradient_checkpointing = False  # recompute block activations in backward (saves memory)
        init_weights(self)
        rescale_blocks(self.predictor_blocks)

    def forward(
        self,
        context_tokens: Tensor,
        context_idx: Tensor,
        target_idx: Tensor,
        mask_index: int = 1,
        grid_hw: tuple[int, int] | None = None,
    ) -> Tensor:
        """context_tokens `(B, n_ctx, D_enc)` at flat grid indices context_idx `(B, n_ctx)`;
        target_idx `(B, n_tgt)` -> predicted target tokens `(B, n_tgt, D_enc)`.
        `mask_index` picks the mask token (one the predictor was trained with); `grid_hw` overrides the grid
        used to decode indices into (t, h, w) when the clip's resolution differs from the config's."""
        batch, n_context, width = context_tokens.shape
        if context_tokens.ndim != 3 or width != self.config.encoder_dim:
            raise ValueError(
                f"context_tokens must be (B, n, {self.config.encoder_dim}), got {tuple(context_tokens.shape)}"
            )
        check_indices("context_idx", context_idx, batch)
        check_indices("target_idx", target_idx, batch)
        if context_idx.shape[1] != n_context:
            raise ValueError(f"context_idx has {context_idx.shape[1]} indices for {n_context} context tokens")
        self.check_mask_index(mask_index)
        c = self.config
        grid_hw = grid_hw or (c.image_size // c.patch_size, c.image_size // c.patch_size)

        mask_token = self.mask_tokens[mask_index]
        if c.same_place:
            predicted = self._same_place(context_tokens, context_idx, target_idx, mask_token, grid_hw)
        else:
            predicted = self._joint(context_tokens, context_idx, target_idx, mask_token, grid_hw)
        if c.copy_last:
            normed = nn.functional.layer_norm(context_tokens, context_tokens.shape[-1:])  # as the targets
            per_step = grid_hw[0] * grid_hw[1]
            predicted = predicted + latest_same_position(normed, context_idx, target_idx, per_step)
        return predicted

    def _joint(self, context_tokens, context_idx, target_idx, mask_token, grid_hw) -> Tensor:
        """V-JEPA 2's predictor: context and mask tokens attend to each other -> `(B, n_tgt, D_enc)`."""
        c, batch, n_context = self.config, *context_tokens.shape[:2]
        context = self.predictor_embed(context_tokens)  # (B, n_ctx, d)
        targets = mask_token.to(context.dtype).expand(batch, target_idx.shape[1], -1)  # (B, n_tgt, d)
        x = torch.cat([context, targets], dim=1)  # (B, n, d)
        positions = torch.cat([context_idx, target_idx], dim=1)  # (B, n)
        if c.pos_embed:
            x = x + sincos_embedding(*grid_positions(positions, grid_hw), c.dim).to(x.dtype)

        order = torch.argsort(positions, dim=1)
        x = gather_tokens(x, order)
        positions = torch.gather(positions, 1, order)[:, None, :]  # (B, 1, n): broadcast over heads
        rope = rope_tables(*grid_positions(positions, grid_hw), c.dim // c.num_heads, x.dtype)
        x = self.predictor_norm(self._blocks(x, rope))
        x = gather_tokens(x, torch.argsort(order, dim=1))  # back to [context, targets] order
        return self.predictor_proj(x[:, n_context:])  # (B, n_tgt, D_enc)

    def _same_place(self, context_tokens, context_idx, target_idx, mask_token, grid_hw) -> Tensor:
        """Each target from its same-place context token in the latest earlier step and its own
        sine-cosine position, through the blocks with attention to itself only -> `(B, n_tgt, D_enc)`."""
        c, n_target = self.config, target_idx.shape[1]
        source = latest_same_position(context_tokens, context_idx, target_idx, grid_hw[0] * grid_hw[1])
        x = self.predictor_embed(source) + mask_token.to(source.dtype)  # (B, n_tgt, d)
        x = x + sincos_embedding(*grid_positions(target_idx, grid_hw), c.dim).to(x.dtype)
        itself = torch.eye(n_target, dtype=torch.bool, device=x.device)  # (n_tgt, n_tgt)
        return self.predictor_proj(self.predictor_norm(self._blocks(x, None, itself)))

    def _blocks(self, x: Tensor, rope, attn_mask: Tensor | None = None) -> Tensor:
        """The predictor blocks on `x` `(B, n, d)`, recomputed in backward with gradient checkpointing."""
        for block in self.predictor_blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, rope, attn_mask, use_reentrant=False)
            else:
                x = block(x, rope, attn_mask)
        return x

    def check_mask_index(self, mask_index: int) -> None:
        """A one-line error for a mask token that does not exist or was never trained (its index
        past the mask types in `config.mask_types`, when the checkpoint records them)."""
        types = self.config.mask_types
        if types is not None and not 0 <= mask_index < len(types):
            trained = ", ".join(f"{i}: {name}" for i, name in enumerate(types))
            raise ValueError(
                f"mask index {mask_index} was not trained: this predictor learned {len(types)} mask types "
                f"({trained}); pick one of those indices"
            )
        if not 0 <= mask_index < len(self.mask_tokens):
            raise ValueError(
                f"mask index {mask_index} is out of range: the predictor has {len(self.mask_tokens)}"
            )
