"""The agent meets pixels: start states encoded from a recorded dataset, and a policy that acts in
an environment from its frames (encode, choose a world-model action, play it back step by step).
`agent.py` holds the learning; this module only converts between frames and the latents it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .data.episodes import STATE_KEY, LeRobotDataset
from .nn import KVCache


class PolicyDecision(nn.Module):
    """One decision of the agent from pixels, as a module (so that `policy_export` can compile it
    whole): the frame `(1, H, W, 3)` uint8, the one an environment step before it (read by two-frame
    world models only) and the proprioceptive state `(1, S)` (read by agents with `state_dim` only;
    else `(1, 0)`) -> the world-model action `(1, A)`, the policy's mode or a sample."""

    def __init__(self, world_model, agent, sample: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.world_model, self.agent, self.sample, self.generator = world_model, agent, sample, generator
        self.frame_skip = world_model.frame_skip
        self.observation_frames = world_model.observation_frames
        self.state_dim = agent.state_dim

    def forward(self, frame: Tensor, previous: Tensor, state: Tensor) -> Tensor:
        two_frames = self.observation_frames == 2
        latents = self.world_model.embed(frame, previous if two_frames else None)  # (1, N, D)
        readings = self.world_model.read_state(latents, state) if self.state_dim else None
        return self.agent.act(latents, readings, sample=self.sample, generator=self.generator)


class AgentPolicy:
    """The agent acting from pixels, as a per-environment-step policy `(observation, info) -> action`:
    every `frame_skip` steps it makes a decision from the frame (with the one before, for two-frame
    models) and `info["state"]` when the agent reads states, and plays the world-model action back
    one environment action at a time. `decide`: a `PolicyDecision`, or the same compiled
    (`policy_export.CompiledPolicy`). Stateful: make one per episode."""

    def __init__(self, decide):
        self.decide, self.previous, self.queue = decide, None, []

    def __call__(self, observation, info) -> np.ndarray:
        pixels = observation["pixels"] if isinstance(observation, dict) else observation
        if not self.queue:
            self.queue = self._decide(pixels, info)
        self.previous = pixels  # the steps in between only keep their frame (a two-frame model's)
        return self.queue.pop(0)

    @torch.inference_mode()
    def _decide(self, pixels, info) -> list[np.ndarray]:
        """The next `frame_skip` environment actions, from this frame (and the one before)."""
        frame = torch.as_tensor(np.asarray(pixels))[None]  # (1, H, W, 3)
        previous = frame if self.previous is None else torch.as_tensor(np.asarray(self.previous))[None]
        state = torch.zeros(1, 0)
        if self.decide.state_dim:
            if "state" not in info:
                raise ValueError(
                    "this agent reads the proprioceptive state, but the environment gives no "
                    "info['state']: use the environment its world model was trained on"
                )
            state = torch.as_tensor(np.asarray(info["state"]), dtype=torch.float32)[None]
        action = self.decide(frame, previous, state)[0]  # (A,) = (frame_skip * A_env,)
        return list(action.view(self.decide.frame_skip, -1).numpy())


@dataclass
class StartStates:
    """Where imagination starts. Every recorded frame's latents `(M, N, D)`, observed states `(M, S)`
    or None and the world-model action taken from it `(M, A)` (None without a recording); `rows`
    `(K, C + 1)` gives each of the K starts as frame rows: the C observed model steps before it
    (its history, as DreamerV3's start states carry theirs in the recurrent state), then itself."""

    latents: Tensor
    states: Tensor | None = None
    actions: Tensor | None = None
    rows: Tensor | None = None  # None: every frame, no history

    def __post_init__(self):
        if self.rows is None:
            self.rows = torch.arange(len(self.latents))[:, None]

    def __len__(self) -> int:
        return len(self.rows)

    def lone(self, picked: Tensor) -> tuple[Tensor, Tensor | None]:
        """The starts `picked` `(B,)` without their history: latents `(B, N, D)`, states `(B, S)` or None."""
        last = self.rows[picked, -1]
        return self.latents[last], None if self.states is None else self.states[last]

    @torch.no_grad()
    def batch(self, world_model, picked: Tensor) -> tuple[Tensor, Tensor | None, KVCache | None]:
        """The starts `picked` `(B,)`: latents `(B, N, D)`, states `(B, S)` or None, and the world
        model's cache of their history (None without one)."""
        latents, states = self.lone(picked)
        past = self.rows[picked, :-1]  # (B, C)
        if not past.shape[1]:
            return latents, states, None
        past_states = None if self.states is None else self.states[past]
        return latents, states, world_model.observe(self.latents[past], self.actions[past], past_states)


@torch.no_grad()
def dataset_start_states(
    world_model, dataset_dir, history: int | None = 0, batch_size: int = 256
) -> StartStates:
    """Every frame of a LeRobot dataset with at least `history` model steps (of `frame_skip` frames;
    None: the world model's history) before it in its episode, as a start: latents under the world
    model (a two-frame model sees each frame with the one before), states when the model takes them,
    and the actions of its history."""
    history = world_model.history if history is None else history
    dataset = LeRobotDataset(dataset_dir, state_key=STATE_KEY if world_model.state_dim else None)
    skip, latents, states, actions, rows = world_model.frame_skip, [], [], [], []
    offset = 0
    for episode in dataset.episode_indices:
        frames = torch.from_numpy(
            dataset.read_frames(episode, range(dataset.length(episode)))
        )  # (T, H, W, 3)
        before = torch.cat([frames[:1], frames[:-1]]) if world_model.observation_frames == 2 else None
        for chunk in torch.arange(len(frames)).split(batch_size):
            latents.append(world_model.encode(frames[chunk], None if before is None else before[chunk]).cpu())
        recorded = dataset.read_rows(episode)
        if world_model.state_dim:
            states.append(torch.from_numpy(recorded["states"]))
        taken = torch.from_numpy(recorded["actions"]).float()  # (T, A_env)
        padded = torch.cat([taken, taken.new_zeros(skip - 1, taken.shape[1])])  # past the end: unused
        actions.append(padded.unfold(0, skip, 1).transpose(1, 2).flatten(1))  # (T, skip * A_env)
        starts = torch.arange(history * skip, len(frames))
        steps_back = torch.arange(history, -1, -1) * skip  # (C + 1,): C*skip, ..., skip, 0
        rows.append(offset + starts[:, None] - steps_back)
        offset += len(frames)
    rows = torch.cat(rows)
    if not len(rows):
        raise ValueError(
            f"no episode of {dataset_dir} is longer than {history} model steps of {skip} frames: "
            "set agent.history lower"
        )
    return StartStates(
        torch.cat(latents).float(), torch.cat(states).float() if states else None, torch.cat(actions), rows
    )


def start_states(
    world_model, data, history: int | None = 0, generator: torch.Generator | None = None
) -> StartStates:
    """Where imagination starts, from `data`: a LeRobot dataset directory (every frame with
    `history` model steps before it, `dataset_start_states`), a tensor of latents `(M, N, D)`, a
    (latents, states) pair, or None for 4,096 standard-normal latents (the distribution SIGReg
    gives a trained encoder's vector latents); only a dataset gives a history."""
    if data is None:
        encoder = world_model.encoder.config
        tokens = 1 if world_model.projector is not None else (encoder.image_size // encoder.patch_size) ** 2
        return StartStates(torch.randn(4096, tokens, world_model.latent_dim, generator=generator))
    if isinstance(data, (str, os.PathLike)):
        return dataset_start_states(world_model, data, history)
    if isinstance(data, Tensor):
        return StartStates(data)
    latents, states = data
    return StartStates(latents, states)
