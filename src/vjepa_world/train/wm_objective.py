"""The world-model training loss: teacher forcing + rollout, plus the anti-collapse term, the
state head's error and the reward and continuation heads' losses when they apply (one forward,
the loss and its metrics by name, as `loss/<name>` with the weight `LossConfig.<name>`)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import KVCache
from ..nn.regularizers import dimension_std, effective_rank, regularizer
from ..world_model import WorldModel
from .config import LossConfig


def _resolved_loss(loss: LossConfig, mode: str, with_states: bool) -> LossConfig:
    """The mode-dependent defaults filled in: distance l1 (frozen) or mse, and the regulariser's
    weight: 0.1 for a trained encoder whose latent the state head anchors, 3 without states, where
    the regulariser's spread alone keeps what prediction can drop (docs/results.md, issue 13)."""
    trained = mode != "frozen"
    weight = loss.regularizer_weight
    if weight is None:
        weight = (0.1 if with_states else 3.0) if trained else 0.0
    return dataclasses.replace(
        loss, distance=loss.distance or ("mse" if trained else "l1"), regularizer_weight=weight
    )


class WorldModelObjective(nn.Module):
    """loss, metrics = objective(inputs, actions (B, T, A), states (B, T, S) or None), where inputs
    are cached latents `(B, T, N, D)` for a frozen encoder, else uint8 frames `(B, T, H, W, 3)`
    (with `previous`, the frames one environment step before each, for two-frame observations).
    With `freeze_latents` a trained encoder's latents are computed without gradient (no regulariser)."""

    def __init__(self, world_model: WorldModel, loss: LossConfig, freeze_latents: bool = False):
        super().__init__()
        self.world_model, self.loss = (
            world_model,
            _resolved_loss(loss, world_model.encoder_training, world_model.state_dim > 0),
        )
        self.freeze_latents = freeze_latents
        self.generator = torch.Generator()  # SIGReg's directions: reseeded every step (exact resume)

    def error(self, predicted: Tensor, target: Tensor) -> Tensor:
        difference = predicted - target
        return (difference.abs() if self.loss.distance == "l1" else difference.square()).mean()

    def forward(
        self,
        inputs: Tensor,
        actions: Tensor,
        states: Tensor | None,
        step: int = 0,
        previous: Tensor | None = None,
        rewards: Tensor | None = None,
        dones: Tensor | None = None,
    ) -> tuple[Tensor, dict]:
        """`rewards` `(B, T)` (summed over the frame skip) and `dones` `(B, T)` are the outcomes of
        each step's action: they train the reward and continuation heads on the latents of the step
        the action leads to, both the encoded ones and the teacher-forced predictions."""
        world_model, context, horizon = self.world_model, self.loss.rollout_context, self.loss.rollout_steps
        trained = world_model.encoder_training != "frozen"
        if trained:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_latents):
                latents = world_model.embed(inputs, previous)  # (B, T, N, D)
        else:
            latents = inputs
        pick = lambda x, steps: None if x is None else x[:, steps]
        cache = KVCache(world_model.predictor.config.depth)
        observed = slice(None, -1)  # steps 0..T-2 predict steps 1..T-1
        predicted = world_model.predict_next(
            latents[:, observed], actions[:, observed], pick(states, observed), cache=cache
        )  # (B, T-1, N, D)
        teacher_forcing = self.error(predicted, latents[:, 1:])
        loss = self.loss.teacher_forcing * teacher_forcing
        metrics = {"loss/teacher_forcing": teacher_forcing.detach()}
        if self.loss.rollout and horizon > 0:
            # the teacher-forcing pass already holds the observed context's keys and values
            ahead = slice(context, context + horizon)
            imagined = world_model.imagined_states(pick(states, context), horizon)  # unknown after `context`
            rolled = world_model.rollout(
                latents[:, context], actions[:, ahead], imagined, history=cache.first(context)
            )  # (B, horizon, N, D)
            rollout = self.error(rolled, latents[:, context + 1 : context + 1 + horizon])
            loss = loss + self.loss.rollout * rollout
            metrics["loss/rollout"] = rollout.detach()
        if world_model.state_head is not None and self.loss.state_decoding:
            decoded = world_model.decode_state(latents)  # (B, T, S) standardised
            state_error = (decoded - world_model.state_head.standardize(states)).square().mean()
            loss = loss + self.loss.state_decoding * state_error
            metrics["loss/state_decoding"] = state_error.detach()
        if world_model.inverse_head is not None and self.loss.inverse_dynamics:
            inferred = world_model.inverse_head(latents[:, :-1], latents[:, 1:])  # (B, T-1, A)
            inverse_error = (inferred - actions[:, :-1]).square().mean()
            loss = loss + self.loss.inverse_dynamics * inverse_error
            metrics["loss/inverse_dynamics"] = inverse_error.detach()
        if world_model.frame_decoder is not None and self.loss.frame_decoding:
            side = world_model.frame_decoder.config.image_size
            pictures = F.interpolate(world_model._images(inputs), size=(side, side), mode="area")
            pictures = pictures.unflatten(0, latents.shape[:2])  # (B, T, 3, S, S)
            # the encoded latents and the predicted ones (teacher forcing): the latent keeps what
            # the frame shows, and the predictor must carry it forward, moved by the actions
            seen = (world_model.frame_decoder(latents) - pictures).square().mean()
            foreseen = (world_model.frame_decoder(predicted) - pictures[:, 1:]).square().mean()
            frame_error = (seen + foreseen) / 2
            loss = loss + self.loss.frame_decoding * frame_error
            metrics["loss/frame_decoding"] = frame_error.detach()
        for name, head, targets in (
            ("reward", world_model.reward_head, rewards),
            ("continuation", world_model.continue_head, None if dones is None else 1.0 - dones.float()),
        ):
            weight = getattr(self.loss, name)
            if head is None or not weight:
                continue
            if targets is None:
                raise ValueError(f"this world model has a {name} head: pass the batch's rewards and dones")
            outcome = targets[:, :-1]  # of the actions at steps 0..T-2, seen in the latents of steps 1..T-1
            term = (head.loss(latents[:, 1:], outcome).mean() + head.loss(predicted, outcome).mean()) / 2
            loss = loss + weight * term
            metrics[f"loss/{name}"] = term.detach()
        if trained:  # anti-collapse: each time step's latents over the batch, as LeWorldModel
            self.generator.manual_seed(step)
            per_step = [
                regularizer(self.loss.regularizer, latents[:, t].flatten(1), self.generator)
                for t in range(latents.shape[1])
            ]
            term = torch.stack(per_step).mean()
            if not self.freeze_latents:
                loss = loss + self.loss.regularizer_weight * term
            flat = latents.detach().flatten(0, 1).flatten(1)  # (B*T, N*D)
            std = dimension_std(flat)
            metrics |= {
                f"loss/{self.loss.regularizer}": term.detach(),
                "latent_rank": effective_rank(flat),
                "latent_std/mean": std.mean(),
                "latent_std/min": std.min(),
            }
        metrics["copy_last"] = self.error(latents[:, :-1], latents[:, 1:]).detach()  # the bar to beat
        metrics["loss"] = loss.detach()
        return loss, metrics
