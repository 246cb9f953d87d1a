"""The agent meets pixels: start states encoded from a recorded dataset, and a policy that acts in
an environment from its frames (encode, choose a world-model action, play it back step by step).
`agent.py` holds the learning; this module only converts between frames and the latents it uses."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from .data.episodes import STATE_KEY, LeRobotDataset


class AgentPolicy:
    """The agent acting from pixels, as a per-environment-step policy `(observation, info) -> action`:
    every `frame_skip` steps it encodes the frame (with the one before, for two-frame models),
    chooses a world-model action (`agent.act`) and plays it back one environment action at a time. Stateful:
    make one per episode."""

    def __init__(self, world_model, agent, sample: bool = False, generator: torch.Generator | None = None):
        self.world_model, self.agent, self.sample, self.generator = world_model, agent, sample, generator
        self.previous, self.queue = None, []

    @torch.no_grad()
    def __call__(self, observation, info) -> np.ndarray:
        frame = torch.as_tensor(
            np.asarray(observation["pixels"] if isinstance(observation, dict) else observation)
        )
        if not self.queue:
            two_frames = self.world_model.observation_frames == 2
            previous = (frame if self.previous is None else self.previous)[None] if two_frames else None
            latents = self.world_model.encode(frame[None], previous)  # (1, N, D)
            action = self.agent.act(latents, sample=self.sample, generator=self.generator)[0]
            self.queue = list(action.view(self.world_model.frame_skip, -1).numpy())
        self.previous = frame
        return self.queue.pop(0)


@torch.no_grad()
def dataset_start_states(world_model, dataset_dir, batch_size: int = 256) -> tuple[Tensor, Tensor | None]:
    """Every frame of a LeRobot dataset as a start state: its latents `(M, N, D)` under the world
    model (a two-frame model sees each frame with the one before), and its states `(M, S)` when
    the model takes them (else None)."""
    dataset = LeRobotDataset(dataset_dir, state_key=STATE_KEY if world_model.state_dim else None)
    latents, states = [], []
    for episode in dataset.episode_indices:
        frames = torch.from_numpy(
            dataset.read_frames(episode, range(dataset.length(episode)))
        )  # (T, H, W, 3)
        before = torch.cat([frames[:1], frames[:-1]]) if world_model.observation_frames == 2 else None
        for rows in torch.arange(len(frames)).split(batch_size):
            latents.append(world_model.encode(frames[rows], None if before is None else before[rows]).cpu())
        if world_model.state_dim:
            states.append(torch.from_numpy(dataset.read_rows(episode)["states"]))
    return torch.cat(latents).float(), torch.cat(states).float() if states else None


def start_states(world_model, data, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Where imagination starts: latents `(M, N, D)` and states `(M, S)` or None, from `data`: a
    LeRobot dataset directory (every frame, `dataset_start_states`), a tensor of latents, a
    (latents, states) pair, or None for 4,096 standard-normal latents (the distribution SIGReg
    gives a trained encoder's vector latents)."""
    if data is None:
        encoder = world_model.encoder.config
        tokens = 1 if world_model.projector is not None else (encoder.image_size // encoder.patch_size) ** 2
        return torch.randn(4096, tokens, world_model.latent_dim, generator=generator), None
    if isinstance(data, (str, os.PathLike)):
        return dataset_start_states(world_model, data)
    if isinstance(data, Tensor):
        return data, None
    latents, states = data
    return latents, states
