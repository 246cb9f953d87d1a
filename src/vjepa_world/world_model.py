"""WorldModel (alias ActionConditionedVJEPA): a V-JEPA encoder plus an action-conditioned
predictor, the latent dynamics that planning and imagination run on.

Two kinds of latent:
- "tokens" (V-JEPA 2-AC): the encoder's layer-normed token grid `(N, D)` per frame, encoder frozen;
- "vector" (LeWorldModel): a `LatentProjector` maps the grid to one vector `(1, d)` per frame, and
  the encoder is trained through the dynamics (`encoder_training` "finetune" from a V-JEPA
  encoder, or "joint" from scratch) with an anti-collapse term instead of an EMA teacher.

`encode` turns RGB observations into latents (each frame repeated to a tubelet, as V-JEPA 2-AC
does); `step` advances latents by one action; `rollout` predicts a whole action sequence, batched
over candidates, feeding the predictions back as V-JEPA 2-AC does in its rollout loss and planner.
The model carries what it was trained with: `frame_skip` (environment steps per model step, whose
actions it takes concatenated) and `history` (observed steps of context), which planning uses.

Optional heads, saved with the model: a state head (proprioception), a distance head (a learned
goal energy), an inverse-dynamics head and a frame decoder (training aids that shape trained
latents), reward and continuation heads (`predict_reward`, `predict_continue`: what planning
without a goal image and the agent learn from) and an uncertainty head, a stochastic latent or an
ensemble (`rollout(..., samples=K)` draws K futures).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import preset_config
from .data.video import normalize_frames
from .files import atomic_write, write_json
from .jepa import VJEPAModel
from .nn import ActionConditionedPredictor, KVCache, VideoEncoder
from .nn.decoder import FrameDecoder, FrameDecoderConfig
from .nn.heads import (
    ContinueHead,
    ContinueHeadConfig,
    DistanceHeadConfig,
    InverseDynamicsConfig,
    InverseDynamicsHead,
    RewardHead,
    RewardHeadConfig,
    StateHead,
    StateHeadConfig,
    TemporalDistanceHead,
)
from .nn.projector import LatentProjector, ProjectorConfig
from .nn.stochastic import EnsembleConfig, EnsembleHead, StochasticConfig, StochasticHead

ENCODER_TRAINING = ("frozen", "finetune", "joint")
SETTINGS_FILE = "world_model.json"  # latent kind, training mode, frame skip, history, head configs
HEADS_FILE = "heads.safetensors"  # the projector's and the heads' weights (prefixed by name)
HEAD_TYPES = {  # optional parts, saved in HEADS_FILE with their configs in SETTINGS_FILE
    "projector": (LatentProjector, ProjectorConfig),
    "state_head": (StateHead, StateHeadConfig),
    "distance_head": (TemporalDistanceHead, DistanceHeadConfig),
    "inverse_head": (InverseDynamicsHead, InverseDynamicsConfig),
    "frame_decoder": (FrameDecoder, FrameDecoderConfig),
    "reward_head": (RewardHead, RewardHeadConfig),
    "continue_head": (ContinueHead, ContinueHeadConfig),
    "stochastic": (StochasticHead, StochasticConfig),
    "ensemble": (EnsembleHead, EnsembleConfig),
}
HEADS = tuple(HEAD_TYPES)
UNCERTAINTY = ("stochastic", "ensemble")


class WorldModel(nn.Module):
    """`encoder` + optional `projector` + `predictor` + optional heads. Without a predictor, one is
    built from the `preset` (default the CPU-sized `ac_tiny`) for the latent width and the
    action/state sizes: now if `action_dim` is given, else when the first actions are seen (or at
    `add_action_input`). Without an encoder, set `world_model.encoder` before encoding."""

    def __init__(
        self,
        encoder: VideoEncoder | VJEPAModel | None = None,
        predictor: ActionConditionedPredictor | None = None,
        *,
        projector: LatentProjector | None = None,
        state_head: StateHead | None = None,
        distance_head: TemporalDistanceHead | None = None,
        inverse_head: InverseDynamicsHead | None = None,
        frame_decoder: FrameDecoder | None = None,
        reward_head: RewardHead | None = None,
        continue_head: ContinueHead | None = None,
        stochastic: StochasticHead | None = None,
        ensemble: EnsembleHead | None = None,
        encoder_training: str = "frozen",
        observation_frames: int = 1,
        frame_skip: int = 1,
        history: int = 3,
        action_dim: int | None = None,
        state_dim: int = 0,
        preset: str = "ac_tiny",
        **predictor_config,
    ):
        super().__init__()
        if isinstance(encoder, VJEPAModel):
            encoder = encoder.trained_encoder  # what V-JEPA 2-AC freezes: the target encoder
        if encoder_training not in ENCODER_TRAINING:
            raise ValueError(
                f"encoder_training must be one of {', '.join(ENCODER_TRAINING)}, got {encoder_training!r}"
            )
        if frame_skip < 1 or history < 0:
            raise ValueError(f"need frame_skip >= 1 and history >= 0, got {frame_skip} and {history}")
        tubelet = 2 if encoder is None else encoder.config.tubelet_size
        if observation_frames not in (1, tubelet):
            raise ValueError(
                f"observation_frames must be 1 or the encoder's tubelet size {tubelet}, "
                f"got {observation_frames}"
            )
        self.encoder_training, self.frame_skip, self.history = encoder_training, frame_skip, history
        self.observation_frames = observation_frames  # 2: the frame and the one before (motion)
        self.encoder = None if encoder is None else encoder.requires_grad_(encoder_training != "frozen")
        if encoder_training == "frozen" and encoder is not None:
            self.encoder.eval()
        self.projector = projector
        self.state_head = state_head
        self.distance_head = distance_head  # a learned goal energy (environment steps to a goal)
        self.inverse_head = inverse_head  # the action between two latents (shapes trained latents)
        self.frame_decoder = frame_decoder  # a small picture of the frame (shapes trained latents)
        self.reward_head, self.continue_head = reward_head, continue_head
        self.stochastic, self.ensemble = stochastic, ensemble  # uncertain futures
        self._predictor_recipe = (preset, state_dim, predictor_config)
        self.predictor = predictor
        if predictor is None and action_dim is not None:
            self.add_action_input(action_dim, state_dim)
        elif predictor is not None:
            self._check_predictor(predictor)

    @property
    def latent_dim(self) -> int:
        """Width of a latent token: the projector's, else the encoder's."""
        if self.projector is not None:
            return self.projector.config.latent_dim
        if self.encoder is None:
            raise ValueError("this world model has no encoder yet: set world_model.encoder first")
        return self.encoder.config.dim

    def _check_predictor(self, predictor: ActionConditionedPredictor) -> None:
        if self.encoder is not None and predictor.config.encoder_dim != self.latent_dim:
            raise ValueError(
                f"the predictor expects {predictor.config.encoder_dim}-wide latents but the encoder "
                f"gives {self.latent_dim}: build the predictor for this encoder"
            )

    def add_action_input(self, action_dim: int | None = None, state_dim: int | None = None) -> WorldModel:
        """Give the model its action input: build the predictor (from the `preset`) for `action_dim`
        actions (and `state_dim` states) now, or, with no `action_dim`, when the first actions are
        seen. A model that already has a predictor keeps it (a different size is an error)."""
        preset, default_states, overrides = self._predictor_recipe
        state_dim = default_states if state_dim is None else state_dim
        if self.predictor is not None:
            if action_dim not in (None, self.action_dim):
                raise ValueError(
                    f"this world model already takes {self.action_dim}-D actions, not {action_dim}-D"
                )
            return self
        self._predictor_recipe = (preset, state_dim, overrides)
        if action_dim is None:
            return self  # built by _ensure_predictor when actions arrive
        config = dataclasses.replace(
            preset_config(preset, "ac_predictor"),
            encoder_dim=self.latent_dim,
            action_dim=action_dim,
            state_dim=state_dim,
            **overrides,
        )
        self.predictor = ActionConditionedPredictor(config)
        if self.encoder is not None:
            self.predictor.to(next(self.encoder.parameters()).device)
        return self

    def _ensure_predictor(self, actions: Tensor) -> None:
        """Build the predictor for these actions' width `(..., A)` if it does not exist yet."""
        if self.predictor is None:
            self.add_action_input(actions.shape[-1])

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        if self.encoder_training == "frozen":
            self.encoder.eval()  # frozen: never in training mode
        return self

    @property
    def latent(self) -> str:
        """ "tokens" (the encoder's grid, layer-normed) or "vector" (one projected vector per frame)."""
        return "tokens" if self.projector is None else "vector"

    @property
    def action_dim(self) -> int | None:
        """Width of an action (None until the predictor is built)."""
        return None if self.predictor is None else self.predictor.config.action_dim

    @property
    def state_dim(self) -> int:
        """Width of the state token (0: the model sees frames and actions only)."""
        return self._predictor_recipe[1] if self.predictor is None else self.predictor.config.state_dim

    def _images(self, observations: Tensor) -> Tensor:
        """uint8 RGB frames `(..., H, W, 3)` (or normalised float `(..., 3, H, W)`) -> normalised
        images `(M, 3, S, S)` at the encoder's size, the leading dimensions flattened."""
        if observations.dtype == torch.uint8:
            images = normalize_frames(observations.to(self._device()))
        else:
            images = observations
        images = images.flatten(0, images.ndim - 4)  # (M, 3, H, W)
        size = self.encoder.config.image_size
        if tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        return images

    def embed(self, observations: Tensor, previous: Tensor | None = None) -> Tensor:
        """`encode` with gradients (training through the encoder): uint8 RGB frames `(B, H, W, 3)`
        -> latents `(B, N, D)`; `(B, T, H, W, 3)` -> `(B, T, N, D)`. Frames are resized to the
        encoder's image size; float `(B, 3, H, W)` images already normalised are taken as they are.

        A model with `observation_frames` 2 sees each observation as the encoder's two-frame
        tubelet: `previous` (the frames one environment step earlier, same shape) then the frame,
        so its latents show motion; without `previous` the frame is repeated (at rest, as a goal
        image is). With 1 the frame is always repeated (V-JEPA 2-AC) and `previous` is refused."""
        if previous is not None and self.observation_frames == 1:
            raise ValueError("this world model sees single frames (observation_frames 1): drop previous=")
        if self.encoder is None:
            raise ValueError("this world model has no encoder yet: set world_model.encoder first")
        lead = observations.shape[:-3]
        images = self._images(observations)  # (M, 3, S, S)
        if self.observation_frames == 2:
            before = images if previous is None else self._images(previous)
            images = torch.stack([before, images], dim=2)  # (M, 3, 2, S, S): one tubelet
        tokens = self.encoder(images)  # (M, N, D): an image is repeated to fill its tubelet
        latents = self._normalize(tokens) if self.projector is None else self.projector(tokens)
        return latents.unflatten(0, lead)

    @torch.no_grad()
    def encode(self, observations: Tensor, previous: Tensor | None = None) -> Tensor:
        """Latents of observations, as `embed` but without gradients."""
        return self.embed(observations, previous)

    def _normalize(self, latents: Tensor) -> Tensor:
        """V-JEPA 2-AC layer-norms token latents (targets and predictions); vectors stay as they are
        (their scale is the anti-collapse term's to set)."""
        return F.layer_norm(latents, latents.shape[-1:]) if self.projector is None else latents

    def decode_state(self, latents: Tensor) -> Tensor:
        """Latents `(..., N, D)` -> the standardised proprioceptive state `(..., S)` they show
        (needs a state head: train-wm adds one when the dataset has `observation.state`)."""
        if self.state_head is None:
            raise ValueError("this world model has no state head: train it on data with observation.state")
        return self.state_head(latents)

    def read_state(self, latents: Tensor, states: Tensor | None = None) -> Tensor:
        """What is known of the proprioceptive state, standardised `(..., S)`: the observed raw
        `states` `(..., S)` where given, else the state head's reading of `latents` `(..., N, D)`
        (an imagined step's state is not observed)."""
        if states is None or self.state_head is None:
            return self.decode_state(latents)  # a one-line error without a state head
        return self.state_head.standardize(states)

    def predict_reward(self, latents: Tensor) -> Tensor:
        """Latents `(..., N, D)` of a step -> the reward `(...)` of the transition into that step (the
        environment's rewards summed over the frame skip), by the reward head."""
        if self.reward_head is None:
            raise ValueError(
                "this world model has no reward head: train it with train-wm (loss.reward > 0) on a "
                "dataset with next.reward"
            )
        return self.reward_head.predict(latents)

    def predict_continue(self, latents: Tensor) -> Tensor:
        """Latents `(..., N, D)` -> the probability `(...)` that the episode goes on after that step
        (1 without a continuation head: episodes then never end)."""
        if self.continue_head is None:
            return latents.new_ones(latents.shape[:-2])
        return self.continue_head.predict(latents)

    def _device(self) -> torch.device:
        module = self.predictor if self.predictor is not None else self.encoder
        return next(module.parameters()).device

    def predict_next(
        self, latents: Tensor, actions: Tensor, states: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """Teacher forcing: true latents `(B, T, N, D)` of steps 0..T-1 and their actions `(B, T, A)`
        -> predicted latents of steps 1..T `(B, T, N, D)`, each seeing steps <= its own.
        An empty `cache` is filled with the T steps (see `ActionConditionedPredictor.forward`)."""
        self._ensure_predictor(actions)
        batch, steps, tokens, dim = latents.shape
        predicted = self.predictor(latents.reshape(batch, steps * tokens, dim), actions, states, cache=cache)
        return self._normalize(predicted).view(batch, steps, tokens, dim)

    def step(
        self, latents: Tensor, actions: Tensor, states: Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[Tensor, KVCache]:
        """latents `(B, N, D)` of the current step and its action `(B, A)` -> next latents `(B, N, D)`
        (layer-normed) and the cache holding every step so far."""
        self._ensure_predictor(actions)
        predicted, cache = self.predictor.step(latents, actions, states, cache=cache)
        return self._normalize(predicted), cache

    def observe(self, latents: Tensor, actions: Tensor, states: Tensor | None = None) -> KVCache:
        """Run observed steps once: latents `(B, T, N, D)` with the actions taken there `(B, T, A)`
        -> the cache a rollout continues from (planning shares it across all candidates)."""
        self._ensure_predictor(actions)
        cache = KVCache(self.predictor.config.depth)
        if latents.shape[1]:
            self.predict_next(latents, actions, states, cache=cache)  # one block-causal pass
        return cache

    def rollout(
        self,
        latents: Tensor,
        actions: Tensor,
        states: Tensor | None = None,
        *,
        history: KVCache | None = None,
        samples: int | None = None,
        uncertainty: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Start latents `(B or 1, N, D)` and action sequences `(B, H, A)` -> predicted latents of
        steps 1..H `(B, H, N, D)`. A single start is shared by all B sequences (planning), and so is
        `history`, the cache of earlier observed steps from `observe` (batch 1 or B).

        With `samples=K`: K futures per sequence `(B, K, H, N, D)`, each step's prediction drawn by
        the `uncertainty` head ("stochastic": a prior sample of the latent variable; "ensemble":
        future k follows member k mod M; default: the one the model has, stochastic first) and fed
        back. Without `samples` the plain predictor's deterministic rollout."""
        self._ensure_predictor(actions)
        batch, horizon = self._check_actions(actions)
        z = latents.expand(batch, -1, -1) if latents.shape[0] == 1 else latents
        head = None
        if samples is not None:
            head = self._uncertainty_head(uncertainty)
            z, actions = z.repeat_interleave(samples, 0), actions.repeat_interleave(samples, 0)
            states = None if states is None else states.repeat_interleave(samples, 0)
            batch = batch * samples
            members = torch.arange(batch, device=z.device) % samples % len(getattr(head, "members", [1]))
        cache = None
        if history is not None and history.steps:
            rows = history.batch_size
            cache = history.copy() if rows == batch else history.repeat(batch // rows)
        predictions = []
        for t in range(horizon):
            action = actions[:, t]
            predicted, cache = self.step(z, action, None if states is None else states[:, t], cache)
            if head is self.stochastic and head is not None:
                predicted = self._normalize(head.draw(z, action, predicted, generator))
            elif head is not None:
                predicted = self._normalize(head.member(members, z, action, predicted))
            z = predicted
            predictions.append(z)
        rolled = torch.stack(predictions, dim=1)  # (B or B*K, H, N, D)
        return rolled if samples is None else rolled.unflatten(0, (-1, samples))

    def _uncertainty_head(self, name: str | None) -> StochasticHead | EnsembleHead:
        """The head that draws futures: `name` ("stochastic" or "ensemble"), or the one the model has."""
        if name is not None and name not in UNCERTAINTY:
            raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}, got {name!r}")
        for candidate in (name,) if name else UNCERTAINTY:
            if getattr(self, candidate) is not None:
                return getattr(self, candidate)
        raise ValueError(
            f"this world model has no {name or 'stochastic or ensemble'} head to draw futures with: fit "
            "one with train-wm (uncertainty.kind / uncertainty.ensemble), or drop samples="
        )

    @staticmethod
    def imagined_states(current: Tensor | None, horizon: int) -> Tensor | None:
        """States for a rollout: the current (observed) state `(B, S)` at the first step, zeros
        (unknown) at the imagined ones -> `(B, horizon, S)`. Training and planning both use this."""
        if current is None:
            return None
        states = current.new_zeros(current.shape[0], horizon, current.shape[-1])
        states[:, 0] = current
        return states

    def rollout_window(
        self, latents: Tensor, actions: Tensor, states: Tensor | None, context: int, horizon: int
    ) -> Tensor:
        """On true windows `(B, T, ...)`: observe steps 0..context-1, then roll out `horizon` steps
        from step `context`, predictions fed back -> latents of steps context+1.. `(B, horizon, N, D)`.
        States, when given, are known up to step `context` and unknown (zeros) after it."""
        pick = lambda x, steps: None if x is None else x[:, steps]
        past, ahead = slice(context), slice(context, context + horizon)
        history = self.observe(latents[:, past], actions[:, past], pick(states, past))
        imagined = self.imagined_states(pick(states, context), horizon)
        return self.rollout(latents[:, context], actions[:, ahead], imagined, history=history)

    def rollout_uncached(
        self,
        latents: Tensor,
        actions: Tensor,
        history: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """`rollout` without a KV cache: every step reruns the whole block-causal sequence (history,
        start, predictions so far). The reference the cache is checked and timed against.
        `history` is (latents (1, T, N, D), actions (1, T, A)) of the observed steps."""
        batch, horizon = self._check_actions(actions)
        if history is None:  # no observed steps: (1, 0, N, D) and (1, 0, A)
            history = (latents[:1, None][:, :0], actions[:1, :0])
        past_latents, past_actions = history
        sequence = [past_latents.expand(batch, -1, -1, -1), latents.expand(batch, -1, -1)[:, None]]
        taken = past_actions.expand(batch, -1, -1)
        for t in range(horizon):
            taken = torch.cat([taken, actions[:, t : t + 1]], dim=1)  # (B, T + t + 1, A)
            context = torch.cat(sequence, dim=1)  # (B, T + t + 1, N, D)
            predicted = self.predict_next(context, taken)[:, -1]  # (B, N, D)
            sequence.append(predicted[:, None])
        return torch.cat(sequence[2:], dim=1)

    def _check_actions(self, actions: Tensor) -> tuple[int, int]:
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, H, {self.action_dim}), got {tuple(actions.shape)}")
        return actions.shape[0], actions.shape[1]

    def settings(self) -> dict:
        """What the model was trained with, saved beside its weights and used by planning."""
        heads = {name: getattr(self, name) for name in HEADS}
        return {
            "latent": self.latent,
            "encoder_training": self.encoder_training,
            "observation_frames": self.observation_frames,
            "frame_skip": self.frame_skip,
            "history": self.history,
            **{
                name: None if head is None else dataclasses.asdict(head.config)
                for name, head in heads.items()
            },
        }

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Encoder and predictor in one directory (`config.json` + `model.safetensors`), plus
        `world_model.json` (the settings) and `heads.safetensors` (projector, state and distance heads)."""
        directory = Path(directory)
        self.predictor.save_pretrained(directory, encoder=self.encoder)
        weights = {
            f"{name}.{key}": value.detach().cpu().clone().contiguous()
            for name in HEADS
            if getattr(self, name) is not None
            for key, value in getattr(self, name).state_dict().items()
        }
        if weights:
            atomic_write(directory / HEADS_FILE, lambda tmp: save_file(weights, str(tmp)))
        write_json(directory / SETTINGS_FILE, self.settings())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> WorldModel:
        """A directory written by `save_pretrained` (or one holding only an encoder and an AC
        predictor: then a frozen token model with frame skip 1)."""
        directory = Path(directory)
        settings = {}
        if (directory / SETTINGS_FILE).is_file():
            settings = json.loads((directory / SETTINGS_FILE).read_text())
        heads = {}
        for name, (module, config) in HEAD_TYPES.items():
            if settings.get(name):
                heads[name] = module(config(**settings[name]))
        if heads:
            weights = load_file(str(directory / HEADS_FILE))
            for name, head in heads.items():
                head.load_state_dict(
                    {k.removeprefix(f"{name}."): v for k, v in weights.items() if k.startswith(f"{name}.")}
                )
        return cls(
            VideoEncoder.from_pretrained(directory),
            ActionConditionedPredictor.from_pretrained(directory),
            **heads,
            encoder_training=settings.get("encoder_training", "frozen"),
            observation_frames=settings.get("observation_frames", 1),
            frame_skip=settings.get("frame_skip", 1),
            history=settings.get("history", 3),
        )


ActionConditionedVJEPA = WorldModel
