"""Planning in latent space: CEM and MPPI over a world model's batched rollout, and the MPC loop.

A planner is a plain function of
- `rollout(actions (S, H, A)) -> predicted latents (S, H, N, D)`: the world model continued from
  the current observation (its observed history shared by every sample through the KV cache);
- `objective(predicted (S, H, N, D)) -> energies (S,)`, lower is better: `goal_energy` toward a
  goal image, `reward_energy` (minus the predicted return: no goal image needed), or any other
  function of the predicted latents (a constraint, a sum of terms);
- the action bounds and a `PlannerConfig`.

With uncertain futures (`PlannerConfig.futures` K > 1) the rollout draws K futures per candidate
`(S, K, H, N, D)` and `over_futures` reduces their energies to mean + `risk` x std: risk > 0 is
pessimistic (avoids plans whose outcome the model is unsure of), < 0 optimistic (seeks them).

CEM, as V-JEPA 2-AC plans: a Gaussian over action sequences; each iteration samples, keeps the
`elites` lowest energies, and moves the mean and std toward theirs with momentum. MPPI instead
weights every sample by softmax(-energy / temperature), with energies standardised per iteration
so the temperature means the same in every environment.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .config import PLANNER_PRESETS, PlannerConfig, planner_config

Rollout = Callable[[Tensor], Tensor]
Objective = Callable[[Tensor], Tensor]


def goal_energy(goal: Tensor, energy: str = "l1", reduce: str = "final") -> Objective:
    """Objective: mean L1 (or squared L2) distance of the predicted latents to `goal` `(N, D)`, at the
    final step or summed over the horizon."""

    def objective(predicted: Tensor) -> Tensor:  # (S, H, N, D) -> (S,)
        difference = predicted - goal
        distance = difference.abs() if energy == "l1" else difference.square()
        per_step = distance.mean(dim=(2, 3))  # (S, H)
        return per_step[:, -1] if reduce == "final" else per_step.sum(dim=1)

    return objective


def state_energy(world_model, goal: Tensor, reduce: str = "sum") -> Objective:
    """Objective: squared distance between the standardised states the world model's state head
    decodes from the predicted latents and from the goal latents `(N, D)`."""
    target = world_model.decode_state(goal)  # (S_dim,)

    def objective(predicted: Tensor) -> Tensor:  # (S, H, N, D) -> (S,)
        per_step = (world_model.decode_state(predicted) - target).square().mean(-1)  # (S, H)
        return per_step[:, -1] if reduce == "final" else per_step.sum(dim=1)

    return objective


def distance_energy(world_model, goal: Tensor, reduce: str = "sum") -> Objective:
    """Objective: the learned temporal distance (environment steps) from each predicted latent to the
    goal latents `(N, D)`, by the world model's distance head."""
    head = world_model.distance_head

    def objective(predicted: Tensor) -> Tensor:  # (S, H, N, D) -> (S,)
        per_step = head.distance(predicted, goal)  # (S, H)
        return per_step[:, -1] if reduce == "final" else per_step.sum(dim=1)

    return objective


def reward_energy(world_model, reduce: str = "sum") -> Objective:
    """Objective: minus the predicted return, the rewards the world model's reward head reads off
    the predicted latents, each counted while the episode is predicted to go on (the continuation
    head's probabilities multiplied up to the step before); `reduce=final` counts the last step only."""

    def objective(predicted: Tensor) -> Tensor:  # (S, H, N, D) -> (S,)
        rewards = world_model.predict_reward(predicted)  # (S, H)
        alive = world_model.predict_continue(predicted).cumprod(dim=1)  # (S, H): going on after step h
        weights = torch.cat([torch.ones_like(alive[:, :1]), alive[:, :-1]], dim=1)
        returns = rewards * weights
        return -(returns[:, -1] if reduce == "final" else returns.sum(dim=1))

    return objective


def over_futures(objective: Objective, risk: float = 0.0) -> Objective:
    """An objective of K futures per candidate `(S, K, H, N, D) -> (S,)`: the mean of the base
    objective's energies over the futures plus `risk` times their standard deviation."""

    def reduced(predicted: Tensor) -> Tensor:
        energies = objective(predicted.flatten(0, 1)).view(predicted.shape[:2])  # (S, K)
        return energies.mean(1) + (risk * energies.std(1) if risk else 0.0)

    return reduced


def resolve_objective(world_model, config: PlannerConfig) -> PlannerConfig:
    """`objective=auto` made concrete: the learned temporal distance when the world model has a
    distance head (it plans better than latent distance: docs/results.md), else the latent distance."""
    if config.objective != "auto":
        return config
    learned = getattr(world_model, "distance_head", None) is not None
    return dataclasses.replace(config, objective="distance" if learned else "latent")


def make_objective(world_model, goal: Tensor | None, config: PlannerConfig) -> Objective:
    """The configured objective (see `PlannerConfig.objective`), toward the goal latents `(N, D)`
    when it needs them, over `config.futures` futures when there are several."""
    config = resolve_objective(world_model, config)
    if config.needs_goal and goal is None:
        raise ValueError(
            f"objective={config.objective} needs a goal image; objective=reward plans without one"
        )
    objective = _base_objective(world_model, goal, config)
    return over_futures(objective, config.risk) if config.futures > 1 else objective


def _base_objective(world_model, goal: Tensor | None, config: PlannerConfig) -> Objective:
    if config.objective == "reward":
        if getattr(world_model, "reward_head", None) is None:
            raise ValueError(
                "objective=reward needs a world model with a reward head (train-wm adds one: loss.reward)"
            )
        rewards = reward_energy(world_model, config.reduce)
        if not config.goal_weight:
            return rewards
        goal_term = goal_energy(goal, config.energy, config.reduce)
        return lambda predicted: rewards(predicted) + config.goal_weight * goal_term(predicted)
    if config.objective == "latent":
        return goal_energy(goal, config.energy, config.reduce)
    head = "state_head" if config.objective == "state" else "distance_head"
    if getattr(world_model, head, None) is None:
        raise ValueError(
            f"objective={config.objective} needs a world model with a {head.replace('_', ' ')} "
            "(train-wm adds one: see loss.state_decoding and distance.steps)"
        )
    make = state_energy if config.objective == "state" else distance_energy
    return make(world_model, goal, config.reduce)


@dataclass
class Plan:
    actions: Tensor  # (H, A) the mean of the final distribution: what MPC executes; (B, H, A) batched
    energies: list[float] = field(default_factory=list)  # best energy of each iteration (batch mean)
    mean_energies: list[float] = field(default_factory=list)  # mean energy of each iteration


def plan_actions(
    rollout: Rollout,
    objective: Objective,
    low: Tensor,
    high: Tensor,
    config: PlannerConfig,
    init_mean: Tensor | None = None,
    generator: torch.Generator | None = None,
    batch: int | None = None,
) -> Plan:
    """CEM or MPPI (config.method) for an action sequence `(H, A)` within [low, high] `(A,)`.
    `batch` B: B independent searches at once (one per start the rollout continues), the rollout
    and objective seeing their samples start by start `(B * S, H, A)`; actions `(B, H, A)`."""
    horizon, dim, rows = config.horizon, low.shape[0], batch or 1
    low, high = low.to(torch.float32), high.to(torch.float32)
    half_range = (high - low) / 2
    if init_mean is None:
        mean = (low + high).div(2).expand(rows, horizon, dim).clone()
    else:
        mean = init_mean.reshape(rows, horizon, dim).clone()
    std = (config.init_std * half_range).expand(rows, horizon, dim).clone()
    floor = config.min_std * half_range
    plan = Plan(mean)
    for _ in range(config.iterations):
        noise = torch.randn(rows, config.samples, horizon, dim, generator=generator)
        samples = (mean[:, None] + std[:, None] * noise).clamp(low, high)  # (B, S, H, A)
        samples[:, 0] = mean  # the current mean is always a candidate
        energies = objective(rollout(samples.flatten(0, 1))).float().cpu().view(rows, -1)  # (B, S)
        plan.energies.append(float(energies.min(1).values.mean()))
        plan.mean_energies.append(float(energies.mean()))
        if config.method == "cem":
            best = energies.topk(config.elites, dim=1, largest=False).indices  # (B, K)
            elites = samples[torch.arange(rows)[:, None], best]  # (B, K, H, A)
            new_mean, new_std = elites.mean(1), elites.std(1, unbiased=False)
        else:
            centred = energies - energies.mean(1, keepdim=True)
            standardised = centred / (energies.std(1, keepdim=True) + 1e-8)
            weights = torch.softmax(-standardised / config.temperature, dim=1)[..., None, None]
            new_mean = (weights * samples).sum(1)
            new_std = (weights * (samples - new_mean[:, None]).square()).sum(1).sqrt()
        mean = config.momentum * mean + (1 - config.momentum) * new_mean
        std = torch.maximum(config.momentum * std + (1 - config.momentum) * new_std, floor)
    actions = mean.clamp(low, high)
    plan.actions = actions if batch else actions[0]
    return plan


def warm_start(actions: Tensor, executed: int, low: Tensor, high: Tensor) -> Tensor:
    """The next plan's starting mean: the rest of `actions` `(H, A)` after the `executed` steps,
    then the middle of the range."""
    middle = ((low + high) / 2).expand(executed, -1)
    return torch.cat([actions[executed:], middle])


# ---------------------------------------------------------------------------- the MPC loop


@dataclass
class EpisodeResult:
    success: bool  # info["is_success"] at the end: arrived and still there
    reached: bool  # info["is_success"] at any step (passing through counts)
    final_distance: float | None  # info["distance"] at the end, when the env reports one
    steps: int
    # each decision's seconds per env action: a plan's encoding of the frames seen since the last
    # plan and its search; a policy call's encoding and acting
    seconds_per_action: list[float]
    frames: np.ndarray  # (T + 1, H, W, 3) observations
    goal_image: np.ndarray | None  # (H, W, 3); None for tasks without one (rewards)
    energies: list[list[float]]  # per replanning: best energy per iteration
    distances: list[float] = field(default_factory=list)  # info["distance"] at reset and after every step
    rewards: list[float] = field(default_factory=list)  # the environment's reward of every step

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    @classmethod
    def ended(cls, info: dict, reached, steps, seconds, frames, goal_image, energies, distances, rewards):
        """The result of an episode whose last step returned `info` (success and distance read there)."""
        distance = info.get("distance")
        return cls(
            success=bool(info.get("is_success")),
            reached=reached,
            final_distance=None if distance is None else float(distance),
            steps=steps,
            seconds_per_action=seconds,
            frames=np.stack(frames),
            goal_image=goal_image,
            energies=energies,
            distances=[float(d) for d in distances],
            rewards=rewards,
        )


def seconds_per_action(results: list[EpisodeResult]) -> float | None:
    """Acting time per environment action over `results`' episodes, the mean of their entries (a
    policy's calls, a plan's time spread over the actions it executes): a planner and a policy are
    compared by the same measure, and the slow calls count."""
    seconds = [s for r in results for s in r.seconds_per_action]
    return sum(seconds) / len(seconds) if seconds else None


def _bounds(env) -> tuple[Tensor, Tensor]:
    space = env.action_space
    return torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)


@torch.inference_mode()
def run_mpc_episode(
    env,
    world_model,
    config: PlannerConfig,
    *,
    seed: int,
    max_steps: int = 50,
    objective_fn: Callable[[Tensor], Objective] | None = None,
) -> EpisodeResult:
    """One closed-loop episode: encode the goal image once, then repeatedly plan from the current
    frame (with the last `config.history` observed steps as context, by default as many as the
    model was trained with), execute `config.execute` model steps, observe. A model step is
    `world_model.frame_skip` environment steps, its actions concatenated.
    `objective_fn(goal_latents) -> Objective` replaces the configured one (`make_objective`).
    Without a goal image (reward tasks) the objective must not need one: `objective=reward`."""
    observation, info = env.reset(seed=seed)
    has_goal = info.get("goal_image") is not None
    if not has_goal and (objective_fn is not None or config.needs_goal):
        raise ValueError(
            "the environment gives no info['goal_image'] at reset: plan toward rewards (objective=reward) "
            "or use an environment with goal images"
        )
    low, high = _bounds(env)
    env_dim = low.shape[0]
    skip = getattr(world_model, "frame_skip", world_model.action_dim // env_dim)  # env steps per model step
    if world_model.action_dim != skip * env_dim:
        raise ValueError(
            f"the world model takes {world_model.action_dim}-D actions with frame skip {skip}, but this "
            f"environment's actions are {env_dim}-D: plan in the environment it was trained on"
        )
    trained_history = getattr(world_model, "history", config.history or 0)
    history = trained_history if config.history is None else config.history
    if history > trained_history:
        raise ValueError(
            f"planner history {history} is longer than the {trained_history} observed steps the world model "
            "was trained with: drop history= to use the model's"
        )
    per_step = 1 if config.hold_actions else skip  # distinct env actions planned per model step
    model_low, model_high = low.repeat(per_step), high.repeat(per_step)

    def model_actions(planned: Tensor) -> Tensor:
        """Planned `(..., H, per_step * A)` -> the model's `(..., H, skip * A)` (a held action repeated)."""
        return planned.repeat(*([1] * (planned.ndim - 1)), skip // per_step)

    goal_image = np.asarray(info["goal_image"]) if has_goal else None
    goal = world_model.encode(torch.as_tensor(goal_image)[None])[0] if has_goal else None  # (N, D)
    objective = objective_fn(goal) if objective_fn else make_objective(world_model, goal, config)
    generator = torch.Generator().manual_seed(config.seed + seed)
    frames, rewards = [np.asarray(observation)], []
    futures = {"samples": config.futures, "uncertainty": config.uncertainty} if config.futures > 1 else {}
    use_states = getattr(world_model, "state_dim", 0) > 0  # proprioception: info["state"] is observed
    observe_state = lambda: torch.as_tensor(info["state"], dtype=torch.float32)[None] if use_states else None
    motion = getattr(world_model, "observation_frames", 1) == 2  # latents of (previous, current) frames

    encoding = []  # seconds spent encoding frames since the last plan: part of the next one's time

    def observe_latents() -> Tensor:  # (1, N, D)
        started = time.perf_counter()
        frame = torch.as_tensor(frames[-1])[None]
        if motion:
            previous = torch.as_tensor(frames[-2] if len(frames) > 1 else frames[-1])[None]
            latents = world_model.encode(frame, previous)
        else:
            latents = world_model.encode(frame)
        encoding.append(time.perf_counter() - started)
        return latents

    current = observe_latents()
    state = observe_state()  # (1, S) or None
    past = {"latents": [], "actions": [], "states": []}  # observed model steps and the actions taken there
    reached, steps, done, seconds, energies, previous = bool(info.get("is_success")), 0, False, [], [], None
    distances = [info["distance"]] if "distance" in info else []
    while not done:
        started = time.perf_counter()
        context = None  # the KV cache of the last `history` observed steps
        if history and past["latents"]:
            recent = {k: torch.stack(v[-history:])[None] if v else None for k, v in past.items()}
            context = world_model.observe(recent["latents"], recent["actions"], recent["states"])
        imagined = world_model.imagined_states(state, config.horizon) if use_states else None  # (1, H, S)

        def rollout(actions: Tensor, h=context, z=current, s=imagined) -> Tensor:
            states = None if s is None else s.expand(len(actions), -1, -1)
            return world_model.rollout(z, model_actions(actions), states=states, history=h, **futures)

        plan = plan_actions(
            rollout,
            objective,
            model_low,
            model_high,
            config,
            init_mean=previous,
            generator=generator,
        )
        energies.append(plan.energies)
        executed = model_actions(plan.actions[: config.execute])  # (execute, skip * A)
        seconds.append((time.perf_counter() - started + sum(encoding)) / (len(executed) * skip))
        encoding.clear()
        for model_action in executed:
            past["latents"].append(current[0])
            past["actions"].append(model_action)
            if use_states:
                past["states"].append(state[0])
            for action in model_action.view(skip, env_dim).numpy():
                observation, reward, terminated, truncated, info = env.step(action)
                frames.append(np.asarray(observation))
                rewards.append(float(reward))
                distances += [info["distance"]] if "distance" in info else []
                reached, steps = reached or bool(info.get("is_success")), steps + 1
                done = terminated or truncated or steps >= max_steps
                if done:
                    break
            if done:
                break
            current, state = observe_latents(), observe_state()
        if config.warm_start:
            previous = warm_start(plan.actions, config.execute, model_low, model_high)
    return EpisodeResult.ended(
        info, reached, steps, seconds, frames, goal_image, energies, distances, rewards
    )


def run_policy_episode(env, policy, *, seed: int, max_steps: int = 50) -> EpisodeResult:
    """One episode of `policy(observation, info) -> action` (called every environment step) from
    `env.reset(seed=seed)`; `seconds_per_action` holds the policy's time per call."""
    observation, info = env.reset(seed=seed)
    goal_image = np.asarray(info["goal_image"]) if info.get("goal_image") is not None else None
    frames, reached, steps = [np.asarray(observation)], bool(info.get("is_success")), 0
    distances, rewards, seconds = [info["distance"]] if "distance" in info else [], [], []
    while steps < max_steps:
        started = time.perf_counter()
        action = np.asarray(policy(observation, info), dtype=np.float32)
        seconds.append(time.perf_counter() - started)
        observation, reward, terminated, truncated, info = env.step(action)
        frames.append(np.asarray(observation))
        rewards.append(float(reward))
        distances += [info["distance"]] if "distance" in info else []
        reached, steps = reached or bool(info.get("is_success")), steps + 1
        if terminated or truncated:
            break
    return EpisodeResult.ended(info, reached, steps, seconds, frames, goal_image, [], distances, rewards)


def run_random_episode(env, *, seed: int, max_steps: int = 50) -> EpisodeResult:
    """The baseline: uniform random actions from the same reset."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    uniform = lambda observation, info: rng.uniform(low, high)
    return run_policy_episode(env, uniform, seed=seed, max_steps=max_steps)


__all__ = [
    "PLANNER_PRESETS",  # the planner config and its presets live in config.py, beside the others
    "EpisodeResult",
    "Objective",
    "Plan",
    "PlannerConfig",
    "distance_energy",
    "goal_energy",
    "make_objective",
    "over_futures",
    "plan_actions",
    "planner_config",
    "resolve_objective",
    "reward_energy",
    "run_mpc_episode",
    "run_policy_episode",
    "run_random_episode",
    "seconds_per_action",
    "state_energy",
    "warm_start",
]
