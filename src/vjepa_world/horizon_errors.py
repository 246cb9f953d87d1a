"""Prediction errors per horizon: the accumulator every evaluation uses, and a world model's
open-loop rollout errors on held-out windows (what train-wm reports at its end).

The world model observes a window's first `context` steps (frames and actions, as MPC does), then
from the next frame rolls out `horizon` steps with its predictions fed back; each predicted step is
compared with the true latents. Two references on the same windows: copying the last observed
frame's latents (a model that ignores the actions and the dynamics), and the same model fed the
actions of another window (shuffled within the batch) for the rollout: a model that uses its
actions must do clearly better with the true ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.episodes import SequenceDataset
from .world_model import WorldModel


@dataclass
class HorizonErrors:
    """Per-horizon means over clips and tokens; horizon 1 is the first unobserved step."""

    l1: dict[str, list[float]] = field(default_factory=dict)  # method -> [error at horizon 1, 2, ...]
    cosine: dict[str, list[float]] = field(default_factory=dict)  # 1 - cosine similarity
    clips: int = 0

    def add(self, method: str, predicted: Tensor, target: Tensor) -> None:
        """Accumulate a batch: predicted and target `(B, horizons, S, D)`."""
        l1 = (predicted - target).abs().mean(dim=(2, 3)).sum(0)  # (horizons,) summed over the batch
        cosine = (1 - F.cosine_similarity(predicted, target, dim=-1)).mean(dim=2).sum(0)
        for store, values in ((self.l1, l1), (self.cosine, cosine)):
            old = store.get(method, [0.0] * len(values))
            store[method] = [a + float(b) for a, b in zip(old, values, strict=True)]

    def mean(self) -> HorizonErrors:
        scale = 1.0 / max(self.clips, 1)
        return HorizonErrors(
            {m: [v * scale for v in vs] for m, vs in self.l1.items()},
            {m: [v * scale for v in vs] for m, vs in self.cosine.items()},
            self.clips,
        )


def copy_last(observed: Tensor, horizons: int) -> Tensor:
    """observed `(B, k, S, D)` -> the last observed step repeated `(B, horizons, S, D)`."""
    return observed[:, -1:].expand(-1, horizons, -1, -1)


@torch.no_grad()
def rollout_errors(
    world_model: WorldModel,
    windows: SequenceDataset,
    horizon: int,
    *,
    context: int = 0,
    use_states: bool = False,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """L1 and cosine errors per horizon `{"l1": {method: [h=1, ...]}, "cosine": ..., "windows": n}`
    of "world model", "copy last" and "shuffled actions", over every window of `windows` (which hold
    cached features and at least context + 1 + horizon frames)."""
    if windows.features is None or windows.sequence_length < context + 1 + horizon:
        raise ValueError(
            f"rollout_errors needs windows of cached features with >= {context + 1 + horizon} frames, got "
            f"sequence_length {windows.sequence_length}, features={windows.features is not None}"
        )
    device = next(world_model.predictor.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    errors = HorizonErrors()
    for start in range(0, len(windows), batch_size):
        items = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
        latents = torch.stack([item["features"] for item in items]).to(device)  # (B, T, N, D)
        actions = torch.stack([item["actions"] for item in items]).to(device)  # (B, T, A)
        states = torch.stack([item["states"] for item in items]).to(device) if use_states else None
        target = latents[:, context + 1 : context + 1 + horizon]  # (B, H, N, D)
        predicted = world_model.rollout_window(latents, actions, states, context, horizon)
        errors.add("world model", predicted, target)
        errors.add("copy last", copy_last(latents[:, context : context + 1], horizon), target)
        order = torch.randperm(len(items), generator=generator).to(device)
        shuffled = torch.cat([actions[:, :context], actions[order, context:]], dim=1)
        predicted = world_model.rollout_window(latents, shuffled, states, context, horizon)
        errors.add("shuffled actions", predicted, target)
        errors.clips += len(items)
    mean = errors.mean()
    return {"l1": mean.l1, "cosine": mean.cosine, "windows": mean.clips}
