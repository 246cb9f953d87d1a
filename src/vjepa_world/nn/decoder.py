"""FrameDecoder: a latent back to a small picture of its frame (Dreamer's image decoder, shrunk).

Trained with the encoder (`loss.frame_decoding`), it makes the latent keep what the frame shows:
without proprioception it locates the reacher's arm more precisely (docs/results.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class FrameDecoderConfig:
    tokens: int = 1  # latent tokens per frame (1 for vector latents)
    latent_dim: int = 64
    image_size: int = 32  # side of the decoded picture: 4 px doubled `log2(image_size / 4)` times
    channels: int = 64


class FrameDecoder(nn.Module):
    """latents `(..., N, D)` -> normalised images `(..., 3, S, S)`, S = `image_size`."""

    def __init__(self, config: FrameDecoderConfig | None = None, **overrides):
        super().__init__()
        self.config = config = dataclasses.replace(config or FrameDecoderConfig(), **overrides)
        doublings = (config.image_size // 4).bit_length() - 1
        if config.image_size != 4 * 2**doublings:
            raise ValueError(f"image_size must be 4 times a power of 2, got {config.image_size}")
        width = config.channels
        self.stem = nn.Linear(config.tokens * config.latent_dim, width * 16)  # a 4 x 4 grid
        layers: list[nn.Module] = []
        for _ in range(doublings):
            layers += [
                nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
                nn.GroupNorm(8, width),
                nn.SiLU(),
            ]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, latents: Tensor) -> Tensor:
        lead = latents.shape[:-2]
        grid = self.stem(latents.flatten(-2).flatten(0, -2)).unflatten(-1, (self.config.channels, 4, 4))
        return self.net(grid).unflatten(0, lead)  # (..., 3, S, S)
