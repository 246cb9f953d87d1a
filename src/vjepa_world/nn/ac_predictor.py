"""ActionConditionedPredictor: V-JEPA 2-AC, the next step's latents from frames, actions and states.

Per time step t the sequence holds [action_t, state_t, (extrinsics_t), frame tokens of step t]:
frame tokens embedded from the encoder's width by `predictor_embed`, the others by one Linear
each. Attention is block-causal: a token of step t sees every token of steps <= t. Frame tokens
get 3D RoPE at (t, row, column) of their frame's own grid (integer coordinates); conditioning
tokens rotate only the time segment. The frame tokens' output at step t, normed and projected
back to the encoder's width, predicts step t + 1's frame tokens. `step` runs one time step
against a key/value cache and gives what the full pass gives.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import ACPredictorConfig
from .attention import LayerCache
from .block import Block
from .init import init_weights, rescale_blocks
from .linear import Linear
from .pretrained import PretrainedMixin
from .rope import rope_tables


class KVCache:
    """Every layer's keys and values of the steps run so far, for `ActionConditionedPredictor.step`."""

    def __init__(self, depth: int):
        self.layers = [LayerCache() for _ in range(depth)]
        self.steps = 0

    @property
    def batch_size(self) -> int:
        """Rows of the cached keys (0 before any step)."""
        keys = self.layers[0].keys
        return 0 if keys is None else keys.shape[0]

    def first(self, steps: int) -> KVCache:
        """The cache of the first `steps` steps only (sharing these tensors)."""
        if not 0 <= steps <= self.steps:
            raise ValueError(f"the cache holds {self.steps} steps, cannot keep the first {steps}")
        out = KVCache(len(self.layers))
        out.steps = steps
        if steps:
            for new, old in zip(out.layers, self.layers, strict=True):
                kept = old.keys.shape[2] // self.steps * steps  # tokens of the first `steps` steps
                new.keys, new.values = old.keys[:, :, :kept], old.values[:, :, :kept]
        return out

    def copy(self) -> KVCache:
        """A cache sharing these tensors, which later steps extend without touching this one."""
        out = KVCache(len(self.layers))
        out.steps = self.steps
        for new, old in zip(out.layers, self.layers, strict=True):
            new.keys, new.values = old.keys, old.values
        return out

    def repeat(self, times: int) -> KVCache:
        """A cache whose batch row i is row `i // times` of this one: one observed context, shared
        by many candidate action sequences (what planning does)."""
        out = KVCache(len(self.layers))
        out.steps = self.steps
        for new, old in zip(out.layers, self.layers, strict=True):
            if old.keys is not None:
                new.keys = old.keys.repeat_interleave(times, dim=0)
                new.values = old.values.repeat_interleave(times, dim=0)
        return out


class ActionConditionedPredictor(PretrainedMixin, nn.Module):
    """frame tokens `(B, T*N, D_enc)`, actions `(B, T, A)`, states `(B, T, S)` -> `(B, T*N, D_enc)`,
    row block t being the predicted tokens of step t + 1."""

    checkpoint_role = "ac_predictor"

    def __init__(self, config: ACPredictorConfig | None = None, **overrides):
        super().__init__()
        config = dataclasses.replace(config or ACPredictorConfig(), **overrides)
        self.config = config
        self.predictor_embed = Linear(config.encoder_dim, config.dim)
        self.action_encoder = Linear(config.action_dim, config.dim)
        self.state_encoder = Linear(config.state_dim, config.dim) if config.state_dim else None
        self.extrinsics_encoder = Linear(config.extrinsics_dim, config.dim) if config.extrinsics_dim else None
        self.predictor_blocks = nn.ModuleList(
            Block(config.dim, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.predictor_proj = Linear(config.dim, config.encoder_dim)
        self.gradient_checkpointing = False  # recompute block activations in backward (saves memory)
        init_weights(self)
        rescale_blocks(self.predictor_blocks)

    # ------------------------------------------------------------------ the full block-causal pass

    def forward(
        self,
        frame_tokens: Tensor,
        actions: Tensor,
        states: Tensor | None = None,
        extrinsics: Tensor | None = None,
        grid_hw: tuple[int, int] | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """T comes from the actions, tokens per step = N / T on a square grid unless `grid_hw`.
        An empty `cache` given here is filled with every layer's keys and values of the T steps, so
        `step` can continue from them (or from `cache.first(t)`) without rerunning the sequence."""
        batch, steps = self._check(frame_tokens, actions, states, extrinsics, time_axis=True)
        per_step = frame_tokens.shape[1] // steps
        grid_hw = self._grid(per_step, grid_hw)
        frames = frame_tokens.view(batch, steps, per_step, -1)
        x = self._embed(frames, actions, states, extrinsics).flatten(1, 2)  # (B, T * (c + n), d)
        time = torch.arange(steps, device=x.device)
        rope = self._rope(time, grid_hw, x.dtype)
        step_of_token = time.repeat_interleave(self.config.conditioning_tokens + per_step)
        block_causal = step_of_token[:, None] >= step_of_token[None, :]  # (L, L): see steps <= own
        if cache is not None and cache.steps:
            raise ValueError("forward fills an empty KVCache; to continue a filled one, call step")
        layers = cache.layers if cache is not None else [None] * len(self.predictor_blocks)
        for block, layer in zip(self.predictor_blocks, layers, strict=True):
            if self.gradient_checkpointing and torch.is_grad_enabled() and layer is None:
                x = checkpoint(block, x, rope, block_causal, use_reentrant=False)
            else:
                x = block(x, rope, block_causal, layer)
        if cache is not None:
            cache.steps = steps
        x = x.view(batch, steps, -1, x.shape[-1])[:, :, self.config.conditioning_tokens :]
        return self.predictor_proj(self.predictor_norm(x.flatten(1, 2)))

    # ------------------------------------------------------------------ one step with a KV cache

    def step(
        self,
        frame_tokens: Tensor,
        actions: Tensor,
        states: Tensor | None = None,
        extrinsics: Tensor | None = None,
        grid_hw: tuple[int, int] | None = None,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, KVCache]:
        """One time step: frame tokens `(B, N, D_enc)`, action `(B, A)`, state `(B, S)` -> the
        predicted tokens of the next step `(B, N, D_enc)` and the cache extended by this step."""
        self._check(frame_tokens, actions, states, extrinsics, time_axis=False)
        cache = cache if cache is not None else KVCache(self.config.depth)
        grid_hw = self._grid(frame_tokens.shape[1], grid_hw)
        one_step = [None if t is None else t[:, None] for t in (frame_tokens, actions, states, extrinsics)]
        x = self._embed(*one_step).flatten(1, 2)  # (B, c + N, d)
        rope = self._rope(torch.tensor([cache.steps], device=x.device), grid_hw, x.dtype)
        for block, layer in zip(self.predictor_blocks, cache.layers, strict=True):
            x = block(x, rope, None, layer)  # sees all cached steps and this one: block-causal
        cache.steps += 1
        x = x[:, self.config.conditioning_tokens :]
        return self.predictor_proj(self.predictor_norm(x)), cache

    # ------------------------------------------------------------------ shared pieces

    def _embed(self, frames: Tensor, actions: Tensor, states: Tensor | None, extrinsics: Tensor | None):
        """frames `(B, T, N, D_enc)` and conditions `(B, T, *)` -> `(B, T, c + N, d)`."""
        tokens = [self.action_encoder(actions)[:, :, None]]
        if self.state_encoder is not None:
            tokens.append(self.state_encoder(states)[:, :, None])
        if self.config.use_extrinsics:
            tokens.append(self.extrinsics_encoder(extrinsics)[:, :, None])
        tokens.append(self.predictor_embed(frames))
        return torch.cat(tokens, dim=2)

    def _rope(self, time: Tensor, grid_hw: tuple[int, int], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos/sin tables `(len(time) * (c + N), head_dim)` in the token layout of `_embed`."""
        height, width = grid_hw
        head_dim = self.config.dim // self.config.num_heads
        rows = torch.arange(height, device=time.device).repeat_interleave(width)  # (N,)
        cols = torch.arange(width, device=time.device).repeat(height)
        frame_t = time[:, None].expand(-1, height * width)  # (T, N)
        frame = rope_tables(frame_t, rows.expand_as(frame_t), cols.expand_as(frame_t), head_dim, dtype)
        cond_t = time[:, None].expand(-1, self.config.conditioning_tokens)  # (T, c): time only
        cond = rope_tables(cond_t, None, None, head_dim, dtype)
        return tuple(torch.cat([c, f], dim=1).flatten(0, 1) for c, f in zip(cond, frame, strict=True))

    def _grid(self, per_step: int, grid_hw: tuple[int, int] | None) -> tuple[int, int]:
        if grid_hw is not None:
            if grid_hw[0] * grid_hw[1] != per_step:
                raise ValueError(f"grid_hw {tuple(grid_hw)} does not hold the {per_step} tokens of a step")
            return tuple(grid_hw)
        side = math.isqrt(per_step)
        if side * side != per_step:
            raise ValueError(f"{per_step} tokens per step is not a square grid: pass grid_hw=(rows, cols)")
        return side, side

    def _check(self, frame_tokens, actions, states, extrinsics, time_axis: bool) -> tuple[int, int]:
        """One-line errors for inputs that do not fit the config; returns (batch, steps)."""
        c = self.config
        shape = "(B, T, {})" if time_axis else "(B, {})"
        if frame_tokens.ndim != 3 or frame_tokens.shape[-1] != c.encoder_dim:
            raise ValueError(
                f"frame_tokens must be (B, {'T*N' if time_axis else 'N'}, {c.encoder_dim}), "
                f"got {tuple(frame_tokens.shape)}"
            )
        batch = frame_tokens.shape[0]
        conditions = [("actions", actions, c.action_dim)]
        if c.state_dim:
            if states is None:
                raise ValueError(f"this predictor is conditioned on {c.state_dim}-D states: pass states")
            conditions.append(("states", states, c.state_dim))
        if c.use_extrinsics:
            if extrinsics is None:
                raise ValueError("this predictor uses extrinsics: pass extrinsics")
            conditions.append(("extrinsics", extrinsics, c.extrinsics_dim))
        steps = actions.shape[1] if time_axis and actions.ndim == 3 else 1
        for name, value, dim in conditions:
            expected = (batch, steps, dim) if time_axis else (batch, dim)
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"{name} must be {shape.format(dim)} = {expected} for these frame tokens, "
                    f"got {tuple(value.shape)}"
                )
        if time_axis and frame_tokens.shape[1] % steps:
            raise ValueError(
                f"{frame_tokens.shape[1]} frame tokens do not split into {steps} steps (T comes from actions)"
            )
        return batch, steps
