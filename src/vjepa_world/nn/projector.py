"""LatentProjector: an encoder's token grid -> one compact latent vector per frame.

LeWorldModel plans on one 192-d vector per frame, made by an MLP projector with BatchNorm on the
encoder's output (the BatchNorm, not a LayerNorm, lets SIGReg shape the latent toward an
isotropic Gaussian). Here the tokens are flattened in their grid order, not pooled, so the latent
keeps where things are in the frame (RoPE alone gives the encoder no absolute position).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class ProjectorConfig:
    tokens: int = 16  # tokens per frame of the encoder (its grid, e.g. 4 x 4 at 64 px, patch 16)
    encoder_dim: int = 192
    hidden_dim: int = 512
    latent_dim: int = 64


class LatentProjector(nn.Module):
    """tokens `(B, N, D_enc)` -> latents `(B, 1, latent_dim)`: flatten, Linear, BatchNorm, GELU, Linear."""

    def __init__(self, config: ProjectorConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or ProjectorConfig(), **overrides)
        self.net = nn.Sequential(
            nn.Linear(config.tokens * config.encoder_dim, config.hidden_dim),
            nn.BatchNorm1d(config.hidden_dim),
            nn.GELU(),
            nn.Linear(config.hidden_dim, config.latent_dim),
        )

    def forward(self, tokens: Tensor) -> Tensor:
        expected = (self.config.tokens, self.config.encoder_dim)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected:
            raise ValueError(
                f"the projector takes (B, {expected[0]}, {expected[1]}) tokens (the frame size it was "
                f"built for), got {tuple(tokens.shape)}"
            )
        return self.net(tokens.flatten(1))[:, None]  # (B, 1, latent_dim)
