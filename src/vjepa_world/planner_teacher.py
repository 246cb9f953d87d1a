"""The planner as the actor's teacher: CEM with the reward head, run inside the world model.

Planning searches anew on every observation; the policy answers in one forward pass at 1/100 of
its time. `agent.imitation` > 0 adds to the actor's imagined-return loss the squared error between
its mode and the planner's first action at replayed start states, so the actor learns where that
search lands. The targets are computed in imagination like every other part of the actor's loss
(no environment, no expert): the same CEM as `plan --objective reward`, from a lone frame and its
observed state, as the actor acts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import planner_config
from .planning import make_objective, plan_actions


@dataclass
class PlannerTargets:
    """Start latents `(K, N, D)`, their observed states `(K, S)` or None, and the planner's first
    action from each in the actor's units, [-1, 1] `(K, A)`."""

    latents: Tensor
    states: Tensor | None
    actions: Tensor

    def __len__(self) -> int:
        return len(self.latents)

    def batch(self, picked: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        states = None if self.states is None else self.states[picked]
        return self.latents[picked], states, self.actions[picked]


@torch.no_grad()
def planner_targets(
    world_model,
    latents: Tensor,
    states: Tensor | None,
    low: Tensor,
    high: Tensor,
    *,
    seed: int = 0,
    batch_size: int = 16,
    precision: str = "float32",
    progress: bool = False,
) -> PlannerTargets:
    """CEM (the default planner preset, objective=reward) from each start `(K, N, D)` (states
    `(K, S)` when the model takes them) over world-model actions in [low, high] `(A,)`: the first
    planned action of each, mapped onto [-1, 1] as the actor's `to_model_actions` inverts.
    `precision` "bfloat16" autocasts the rollouts, as the agent's imagination does."""
    config = planner_config("default", objective="reward")
    objective = make_objective(world_model, None, config)
    generator = torch.Generator().manual_seed(seed)
    first = []
    for begin in tqdm(range(0, len(latents), batch_size), desc="planner targets", disable=not progress):
        z = latents[begin : begin + batch_size]  # (B, N, D)
        observed = None if states is None else states[begin : begin + batch_size]
        imagined = world_model.imagined_states(observed, config.horizon)  # (B, H, S) or None

        def rollout(actions: Tensor, z=z, imagined=imagined) -> Tensor:  # (B * S, H, A) start by start
            repeat = len(actions) // len(z)
            expand = lambda x: None if x is None else x.repeat_interleave(repeat, dim=0)
            with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                return world_model.rollout(expand(z), actions, states=expand(imagined)).float()

        plan = plan_actions(rollout, objective, low, high, config, generator=generator, batch=len(z))
        first.append(plan.actions[:, 0])  # (B, A)
    actions = torch.cat(first)
    return PlannerTargets(latents, states, (actions - low) / (high - low) * 2 - 1)


def label_starts(world_model, agent, starts, *, seed: int, progress: bool = False) -> PlannerTargets | None:
    """`agent.config.imitation_starts` of the replayed `starts` (a `StartStates`), drawn with
    `seed`, as lone frames with the planner's targets; None when `agent.config.imitation` is 0."""
    config = agent.config
    if not config.imitation:
        return None
    if agent.discrete:
        raise ValueError("agent.imitation needs continuous actions (CEM plans in a box): set it to 0")
    picked = torch.randperm(len(starts), generator=torch.Generator().manual_seed(seed))
    latents, states = starts.lone(picked[: config.imitation_starts])
    return planner_targets(
        world_model,
        latents,
        states,
        agent.low,
        agent.high,
        seed=seed,
        precision=config.precision,
        progress=progress,
    )
