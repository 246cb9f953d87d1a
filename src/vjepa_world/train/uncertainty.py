"""Fitting a world model's uncertainty heads (`nn/stochastic.py`) after its training.

The heads model how the true next latents scatter around the predictor's prediction, so they are
fitted on the finished model: its latents of every training frame, and its teacher-forced
predictions over windows of `data.sequence_length` steps (each transition seen with the context
training gave it). The predictor, encoder and other heads are never changed: the deterministic
world model stays exactly what it was.

- Stochastic latent: the negative ELBO, the decoder's negative log-likelihood of the next latents
  plus DreamerV3's balanced KL with free bits (`kl_balance`: dynamics 0.5, representation 0.1,
  1 free nat).
- Ensemble: every member regresses the next latents (squared error), from its own random start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.episodes import FeatureCache, SequenceDataset
from ..nn.stochastic import EnsembleConfig, EnsembleHead, StochasticConfig, StochasticHead, kl_balance
from ..world_model import WorldModel
from .config import UncertaintyConfig


@dataclass
class Transitions:
    """Teacher-forced transitions, one row each: latents z_t `(M, N, D)`, actions `(M, A)`, the
    predictor's next latents mu_{t+1} `(M, N, D)` and the true next latents z_{t+1} `(M, N, D)`."""

    latents: Tensor
    actions: Tensor
    predicted: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, rows) -> Transitions:
        return Transitions(self.latents[rows], self.actions[rows], self.predicted[rows], self.targets[rows])


@torch.no_grad()
def teacher_forced_transitions(
    world_model: WorldModel, windows: SequenceDataset, stride: int = 1, batch_size: int = 128
) -> Transitions:
    """Every `stride`-th window of cached latents `(T, N, D)` run through the predictor at once:
    its T - 1 transitions, each predicted from the steps before it in the window."""
    if windows.features is None:
        raise ValueError("teacher_forced_transitions needs windows of cached latents (features=)")
    device = next(world_model.predictor.parameters()).device
    rows, use_states = range(0, len(windows), stride), world_model.state_dim > 0
    parts = []
    for start in range(0, len(rows), batch_size):
        items = [windows[i] for i in rows[start : start + batch_size]]
        latents = torch.stack([item["features"] for item in items]).to(device).float()  # (B, T, N, D)
        actions = torch.stack([item["actions"] for item in items]).to(device)  # (B, T, A)
        states = torch.stack([item["states"] for item in items]).to(device) if use_states else None
        predicted = world_model.predict_next(
            latents[:, :-1], actions[:, :-1], None if states is None else states[:, :-1]
        )  # (B, T-1, N, D)
        flat = lambda x: x.flatten(0, 1).cpu()
        parts.append(
            Transitions(flat(latents[:, :-1]), flat(actions[:, :-1]), flat(predicted), flat(latents[:, 1:]))
        )
    return Transitions(
        *(torch.cat([getattr(p, f) for p in parts]) for f in ("latents", "actions", "predicted", "targets"))
    )


def stochastic_loss(
    head: StochasticHead, batch: Transitions, config: UncertaintyConfig
) -> tuple[Tensor, dict]:
    nll, kl_dynamics, kl_representation = head(batch.latents, batch.actions, batch.predicted, batch.targets)
    kl = kl_balance(kl_dynamics, kl_representation, config.dynamics, config.representation, config.free_nats)
    loss = nll.mean() + kl.mean()
    return loss, {"nll": float(nll.detach().mean()), "kl": float(kl_dynamics.detach().mean())}


def ensemble_loss(head: EnsembleHead, batch: Transitions, config: UncertaintyConfig) -> tuple[Tensor, dict]:
    predictions = head(batch.latents, batch.actions, batch.predicted)  # (M, B, N, D)
    loss = (predictions - batch.targets).square().mean(dim=(1, 2, 3)).sum()
    return loss, {"mse": float(loss.detach()) / len(head.members)}


def fit_head(
    head, transitions: Transitions, config: UncertaintyConfig, loss_fn, seed: int = 0, progress=True
):
    """AdamW on random minibatches of `transitions` for `config.steps` steps; the head in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=1e-4)
    head.train()
    bar = tqdm(range(config.steps), desc=f"fit {type(head).__name__}", unit="step", disable=not progress)
    for _ in bar:
        rows = torch.randint(len(transitions), (config.batch_size,), generator=generator)
        loss, metrics = loss_fn(head, transitions[rows], config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 100.0)
        optimizer.step()
        bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()})
    return head.eval()


def fit_uncertainty(
    world_model: WorldModel,
    data,
    features: FeatureCache,
    episodes: list[int],
    config: UncertaintyConfig,
    window: dict,
    seed: int = 0,
    progress: bool = True,
) -> tuple[StochasticHead | None, EnsembleHead | None]:
    """The configured heads (`config.kind`, `config.ensemble` members), fitted on the teacher-forced
    transitions of `episodes` of `data` (latents from `features`; `window` holds SequenceDataset's
    frame_skip, state_key and the like)."""
    windows = SequenceDataset(
        data, window["sequence_length"], features=features, episodes=episodes,
        keep_episodes=len(episodes), frame_skip=window["frame_skip"], state_key=window["state_key"],
    )  # fmt: skip
    transitions = teacher_forced_transitions(world_model, windows, stride=window["frame_skip"])
    tokens, dim = transitions.latents.shape[1:]
    shape = {"tokens": tokens, "latent_dim": dim, "action_dim": transitions.actions.shape[-1]}
    stochastic = ensemble = None
    if config.kind != "none":
        torch.manual_seed(seed)
        head = StochasticHead(StochasticConfig(kind=config.kind, **shape))
        stochastic = fit_head(head, transitions, config, stochastic_loss, seed, progress)
    if config.ensemble:
        torch.manual_seed(seed + 1)
        head = EnsembleHead(EnsembleConfig(members=config.ensemble, **shape))
        ensemble = fit_head(head, transitions, config, ensemble_loss, seed, progress)
    return stochastic, ensemble
