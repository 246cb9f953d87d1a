"""WorldModel (alias ActionConditionedVJEPA): a frozen V-JEPA encoder plus an action-conditioned
predictor, the latent dynamics that planning and imagination run on.

`encode` turns RGB observations into layer-normed latents (each frame repeated to a tubelet, as
V-JEPA 2-AC does); `step` advances latents by one action; `rollout` predicts a whole action
sequence, batched over candidates, feeding the (layer-normed) predictions back as V-JEPA 2-AC
does in its rollout loss and planner.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoints import preset_config
from .data.video import normalize_frames
from .jepa import VJEPAModel
from .nn import ActionConditionedPredictor, KVCache, VideoEncoder


class WorldModel(nn.Module):
    """`encoder` (frozen) + `predictor`. Without a predictor, one is built from the `preset`
    (default the CPU-sized `ac_tiny`) for this encoder's width and the given action/state sizes."""

    def __init__(
        self,
        encoder: VideoEncoder | VJEPAModel,
        predictor: ActionConditionedPredictor | None = None,
        *,
        action_dim: int | None = None,
        state_dim: int = 0,
        preset: str = "ac_tiny",
        **predictor_config,
    ):
        super().__init__()
        if isinstance(encoder, VJEPAModel):
            encoder = encoder.target_encoder  # what V-JEPA 2-AC freezes
        if predictor is None:
            if action_dim is None:
                raise ValueError("pass a predictor, or action_dim=... to build one")
            config = dataclasses.replace(
                preset_config(preset, "ac_predictor"),
                encoder_dim=encoder.config.dim,
                action_dim=action_dim,
                state_dim=state_dim,
                **predictor_config,
            )
            predictor = ActionConditionedPredictor(config)
        if predictor.config.encoder_dim != encoder.config.dim:
            raise ValueError(
                f"the predictor expects {predictor.config.encoder_dim}-wide latents but the encoder "
                f"gives {encoder.config.dim}: build the predictor for this encoder"
            )
        self.encoder = encoder.requires_grad_(False).eval()
        self.predictor = predictor

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    @property
    def action_dim(self) -> int:
        return self.predictor.config.action_dim

    @torch.no_grad()
    def encode(self, observations: Tensor) -> Tensor:
        """uint8 RGB frames `(B, H, W, 3)` -> latents `(B, N, D)`; `(B, T, H, W, 3)` -> `(B, T, N, D)`.
        Float `(B, 3, H, W)` images already normalised are taken as they are."""
        images = normalize_frames(observations) if observations.dtype == torch.uint8 else observations
        lead = images.shape[:-3]
        tokens = self.encoder(images.flatten(0, len(lead) - 1))  # images -> one tubelet each: (B*T, N, D)
        return F.layer_norm(tokens, tokens.shape[-1:]).unflatten(0, lead)

    def step(
        self, latents: Tensor, actions: Tensor, states: Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[Tensor, KVCache]:
        """latents `(B, N, D)` of the current step and its action `(B, A)` -> next latents `(B, N, D)`
        (layer-normed) and the cache holding every step so far."""
        predicted, cache = self.predictor.step(latents, actions, states, cache=cache)
        return F.layer_norm(predicted, predicted.shape[-1:]), cache

    def rollout(self, latents: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Start latents `(B or 1, N, D)` and action sequences `(B, H, A)` -> predicted latents of
        steps 1..H `(B, H, N, D)`. A single start is shared by all B sequences (planning)."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, H, {self.action_dim}), got {tuple(actions.shape)}")
        batch, horizon = actions.shape[:2]
        z = latents.expand(batch, -1, -1) if latents.shape[0] == 1 else latents
        cache, predictions = None, []
        for t in range(horizon):
            z, cache = self.step(z, actions[:, t], None if states is None else states[:, t], cache)
            predictions.append(z)
        return torch.stack(predictions, dim=1)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Encoder and predictor in one directory (`config.json` + `model.safetensors`)."""
        self.predictor.save_pretrained(directory, encoder=self.encoder)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> WorldModel:
        return cls(
            VideoEncoder.from_pretrained(directory), ActionConditionedPredictor.from_pretrained(directory)
        )


ActionConditionedVJEPA = WorldModel
