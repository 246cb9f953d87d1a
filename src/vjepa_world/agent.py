"""Actor-critic in imagination (DreamerV3's recipe on our world model): a policy learned inside it.

An actor pi(a | z) and a critic v(z) on latent features are trained only on imagined rollouts:
from replayed start latents, the actor picks an action, the world model predicts the next
latents, its reward and continuation heads score them, `horizon` (3) times. The features are a
step's latents, flattened, and for a world model with a state head the standardised
proprioceptive state, as the planner conditions on it: observed at the start of each rollout and
when acting, read from the latents by the state head at imagined steps.

- Returns: lambda-returns (lambda 0.95) bootstrapped with the critic, discounted per model step.
- Actor: maximises the returns scaled by the return range, max(1, EMA of the 95th - 5th
  percentile of the returns), so that one entropy scale fits rewards of any size, plus `entropy` x
  the policy's entropy. The gradient (`actor_gradient`): "dynamics" backpropagates the returns
  through the frozen world model into the actions that produced them (reparameterised samples,
  DreamerV1/V2's choice for continuous control), through the imagined rewards only: the critic's
  values bootstrap the returns as constants unless `value_gradient`; "reinforce" (DreamerV3)
  weighs the actions' log-probabilities by the advantages (return - value) and needs no gradient
  through the model.
  "auto": dynamics for continuous actions, reinforce for discrete ones (whose samples have no
  gradient). Actions are continuous, a Normal with tanh-bounded mean
  and std in [0.1, 1] (the world model sees them clipped to [-1, 1], then mapped onto the action
  box), or discrete (a categorical with 1% uniform mixed in, given to the model one-hot).
- Critic: symlog two-hot regression of the lambda-returns, plus a pull toward a slow copy of
  itself (an exponential moving average of its weights, rate 0.02 per update).
- Imitation (off by default, `imitation` > 0): the actor's mode is also pulled toward CEM's first
  action, planned in the world model from replayed starts (`planner_teacher.py`).
- Pessimism (off by default, `pessimism` > 0): each imagined reward minus that weight times the
  world model's ensemble disagreement on the step (MOPO), so the actor learns to stay where the
  model's members agree.

The world model is frozen: its weights never change (with "dynamics" gradients pass through it
to the actions, not into it). `learn_with_world_model(world_model, data)` is the
entry point; `train/agent.py` adds checkpoints, logs and the command line's loop.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .actor_critic import Actor, Critic, ReturnScale, lambda_returns
from .agent_pixels import start_states
from .files import atomic_write
from .nn import KVCache
from .planner_teacher import PlannerTargets, label_starts

AGENT_FILE, AGENT_WEIGHTS = "agent.json", "agent.safetensors"
IMITATION_STARTS = 1024  # replayed starts the planner labels when the actor imitates it


@dataclass
class AgentConfig:
    # imagined model steps per start state: about as far as the world model is right, and as far
    # as CEM plans; DreamerV3's 15 let the actor learn from the model's errors (ReacherReward:
    # 5% at 15; the online policy 45% at 4, 63% at 3, docs/results.md)
    horizon: int = 3
    # observed model steps before each replayed start, run through the world model first so its
    # rollouts continue a history as in training (None: the world model's own, train-wm's
    # loss.rollout_context). 0, the default: a lone frame. ReacherReward: 7% with the model's 3
    # (starts then skip each episode's first 15 frames) against 17% with none (docs/results.md)
    history: int | None = 0
    discount: float = 0.99  # per model step (frame_skip environment steps)
    lam: float = 0.95  # lambda of the lambda-returns
    entropy: float = 3e-4  # weight of the policy's entropy
    slow_critic_rate: float = 0.02  # the slow critic moves this fraction toward the critic per update
    slow_critic_weight: float = 1.0  # pull of the critic toward the slow critic's values
    return_decay: float = 0.99  # EMA of the return range (95th - 5th percentile)
    hidden_dim: int = 256
    layers: int = 2
    min_std: float = 0.1  # continuous actions: the policy's std stays in [min_std, max_std]
    max_std: float = 1.0
    unimix: float = 0.01  # discrete actions: uniform mixed into the policy
    lr: float = 3e-4  # actor and critic (AdamW, gradients clipped to norm 100)
    batch_size: int = 256  # start states per update
    steps: int = 1000  # updates
    # of the world model's imagined steps: "bfloat16" autocasts them (about 2x faster on a CPU with
    # AVX-512 BF16); the actor, the critic and the reward head stay in float32
    precision: str = "float32"
    # how the actor's loss reaches it: "dynamics", "reinforce" or "auto" (see the module docstring)
    actor_gradient: str = "auto"
    # "dynamics" only: let the actor's gradient pass through the critic's bootstrap values too. Off,
    # the values enter the returns as constants and the gradient comes from the imagined rewards:
    # the critic is fitted to values, not to their slope in the latent, and following that slope
    # cost the policy 12-26 points of success on ReacherReward (docs/results.md)
    value_gradient: bool = False
    # each imagined reward minus this times the world model's ensemble disagreement on that step
    # (MOPO's penalty: the actor keeps away from where the model is unsure); > 0 needs an ensemble
    pessimism: float = 0.0
    # weight of the actor's squared error to the planner's first action (CEM with the reward head,
    # run in the world model: `planner_teacher.py`) at `imitation_starts` replayed starts, labelled
    # again whenever training (re)starts on a world model; 0: the imagined returns alone. ReacherReward:
    # the policy touches the target more often (98% at 1) but stays less (success 36% against 45%,
    # at horizon 4)
    imitation: float = 0.0
    imitation_starts: int = IMITATION_STARTS
    # imitate only where the planner's action scores higher than the actor's by one model step and
    # the critic (reward + discount x continue x value): the Q-filter of DDPG from demonstrations
    imitation_filter: bool = True

    def __post_init__(self):
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")
        if self.actor_gradient not in ("auto", "dynamics", "reinforce"):
            raise ValueError(
                f"actor_gradient must be auto, dynamics or reinforce, got {self.actor_gradient!r}"
            )
        if self.imitation < 0 or self.imitation_starts < 1:
            raise ValueError(
                f"need imitation >= 0 and imitation_starts >= 1, got {self.imitation}, "
                f"{self.imitation_starts}"
            )
        moved = {
            "imitation_starts": self.imitation_starts != IMITATION_STARTS,
            "imitation_filter": not self.imitation_filter,
        }
        shaping = [name for name, changed in moved.items() if changed]
        if shaping and not self.imitation:
            raise ValueError(
                f"agent.{shaping[0]} shapes the imitation of the planner, and agent.imitation 0 has none: "
                "set agent.imitation > 0 or drop it"
            )
        if self.pessimism < 0:
            raise ValueError(f"pessimism is a penalty weight and must be >= 0, got {self.pessimism}")
        if self.horizon < 1 or not 0 < self.discount <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(
                f"need horizon >= 1, 0 < discount <= 1 and 0 <= lam <= 1, got {self.horizon}, "
                f"{self.discount}, {self.lam}"
            )


class Agent(nn.Module):
    """Actor, critic and slow critic for a world model's latents `(N, D)` and actions: `act`
    chooses, `update` learns from one imagined batch, `learn_with_world_model` runs the loop.
    `low`/`high` `(A,)` bound the world model's actions (continuous); `discrete` actions are one-hot.
    `state_dim` > 0: the features also hold the standardised state (`WorldModel.read_state`)."""

    def __init__(
        self,
        latent_shape: tuple[int, int],
        action_dim: int,
        *,
        discrete: bool = False,
        low: Tensor | None = None,
        high: Tensor | None = None,
        state_dim: int = 0,
        config: AgentConfig | None = None,
    ):
        super().__init__()
        self.config = config = config or AgentConfig()
        self.latent_shape, self.action_dim, self.discrete = tuple(latent_shape), action_dim, discrete
        self.state_dim = state_dim
        features = latent_shape[0] * latent_shape[1] + state_dim
        self.actor = Actor(
            features,
            action_dim,
            discrete,
            config.hidden_dim,
            config.layers,
            std_range=(config.min_std, config.max_std),
            unimix=config.unimix,
        )
        self.critic = Critic(features, config.hidden_dim, config.layers)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_scale = ReturnScale(config.return_decay)
        self.register_buffer("low", -torch.ones(action_dim) if low is None else torch.as_tensor(low).float())
        self.register_buffer(
            "high", torch.ones(action_dim) if high is None else torch.as_tensor(high).float()
        )
        self.actor_optimizer = torch.optim.AdamW(self.actor.parameters(), lr=config.lr, eps=1e-5)
        self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=config.lr, eps=1e-5)
        if config.value_gradient and self.actor_gradient == "reinforce":
            raise ValueError(
                "agent.value_gradient acts on dynamics gradients only (REINFORCE holds the values "
                "constant): drop it or set actor_gradient=dynamics"
            )
        if discrete and config.actor_gradient == "dynamics":
            raise ValueError(
                "actor_gradient=dynamics needs continuous actions (a discrete sample has no gradient): "
                "use reinforce or auto"
            )

    @classmethod
    def for_world_model(cls, world_model, latent_shape: tuple[int, int], **options) -> Agent:
        """A new agent for `world_model`'s actions (and its state, when it has a state head)."""
        head = getattr(world_model, "state_head", None)  # a world model of one's own may have none
        state_dim = 0 if head is None else head.config.state_dim
        return cls(latent_shape, world_model.action_dim, state_dim=state_dim, **options)

    def features(self, latents: Tensor, readings: Tensor | None = None) -> Tensor:
        """Latents `(..., N, D)` and state readings `(..., S)` -> the actor's and critic's input
        `(..., F)`."""
        flat = latents.flatten(-2)
        if not self.state_dim:
            return flat
        if readings is None:
            raise ValueError(
                "this agent reads the proprioceptive state: pass its readings (WorldModel.read_state)"
            )
        return torch.cat([flat, readings.to(flat.dtype)], dim=-1)

    def read_features(self, world_model, latents: Tensor, states: Tensor | None = None) -> Tensor:
        """`features` with the state read by the world model: from the observed raw `states`
        `(..., S)` where given, else from the latents `(..., N, D)` by its state head."""
        readings = world_model.read_state(latents, states) if self.state_dim else None
        return self.features(latents, readings)

    def rollout_features(self, world_model, latents: Tensor, states: Tensor | None = None) -> Tensor:
        """Imagined latents `(B, H + 1, N, D)` -> features `(B, H + 1, F)`: the state observed at
        step 0 (`states` `(B, S)`, raw; None: read there too), read by the state head after it."""
        first = self.read_features(world_model, latents[:, :1], None if states is None else states[:, None])
        return torch.cat([first, self.read_features(world_model, latents[:, 1:])], dim=1)

    @property
    def actor_gradient(self) -> str:
        """dynamics or reinforce: the config's actor_gradient, auto resolved by the action kind."""
        if self.config.actor_gradient == "auto":
            return "reinforce" if self.discrete else "dynamics"
        return self.config.actor_gradient

    # ------------------------------------------------------------------ acting

    def to_model_actions(self, actions: Tensor) -> Tensor:
        """The actor's actions -> the world model's: one-hot as is; continuous clipped to [-1, 1]
        and mapped onto [low, high]."""
        if self.discrete:
            return actions
        return self.low + (actions.clamp(-1, 1) + 1) / 2 * (self.high - self.low)

    @torch.no_grad()
    def act(
        self,
        latents: Tensor,
        readings: Tensor | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Latents `(B, N, D)` (and state readings `(B, S)`, for an agent with `state_dim`) ->
        world-model actions `(B, A)`: the policy's mode, or a sample."""
        features = self.features(latents, readings)
        actions = self.actor.sample(features, generator) if sample else self.actor.mode(features)
        return self.to_model_actions(actions)

    # ------------------------------------------------------------------ learning

    def imagine(
        self,
        world_model,
        starts: Tensor,
        states: Tensor | None = None,
        generator: torch.Generator | None = None,
        differentiable: bool = False,
        history: KVCache | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Roll the actor through the world model from latents `(B, N, D)` (and observed states
        `(B, S)` when the model takes them; `history`, the cache of the steps observed before them):
        latents of steps 0..H `(B, H + 1, N, D)` and the actor's actions at steps 0..H-1 `(B, H, A)`.
        `differentiable`: the latents keep their gradient with respect to the actions (and so to
        the actor's weights)."""
        horizon = self.config.horizon
        observed = states
        if world_model.state_dim and states is None:
            states = starts.new_zeros(starts.shape[0], world_model.state_dim)  # unknown
        imagined = world_model.imagined_states(states, horizon) if world_model.state_dim else None
        z, cache, latents, actions = starts, history, [starts], []
        low_precision = self.config.precision == "bfloat16"
        with torch.set_grad_enabled(differentiable):
            for t in range(horizon):
                features = self.read_features(world_model, z, observed if t == 0 else None)
                action = self.actor.sample(features, generator)  # (B, A)
                state = None if imagined is None else imagined[:, t]
                with torch.autocast(starts.device.type, dtype=torch.bfloat16, enabled=low_precision):
                    z, cache = world_model.step(z, self.to_model_actions(action), state, cache)
                z = z.float()
                latents.append(z)
                actions.append(action)
        return torch.stack(latents, dim=1), torch.stack(actions, dim=1)

    def update(
        self,
        world_model,
        starts: Tensor,
        states: Tensor | None = None,
        generator: torch.Generator | None = None,
        history: KVCache | None = None,
        teacher: PlannerTargets | None = None,
    ) -> dict[str, float]:
        """One actor and one critic step on a batch imagined from `starts` `(B, N, D)` (after their
        `history`, see `imagine`); with the planner's `teacher` targets, a batch of them pulls the
        actor's mode toward the planner's actions (`imitation`)."""
        c = self.config
        dynamics = self.actor_gradient == "dynamics"
        latents, actions = self.imagine(world_model, starts, states, generator, dynamics, history)
        with torch.set_grad_enabled(dynamics):  # the returns as a function of the actions
            features = self.rollout_features(world_model, latents, states)  # (B, H + 1, F)
            rewards = world_model.predict_reward(latents[:, 1:])  # (B, H)
            if c.pessimism:
                steps = (latents[:, :-1], self.to_model_actions(actions), latents[:, 1:])
                rewards = rewards - c.pessimism * world_model.ensemble.disagreement(*steps)  # (B, H)
            with torch.set_grad_enabled(dynamics and c.value_gradient):
                values = self.critic.value(features)  # (B, H + 1)
            continues = world_model.predict_continue(latents[:, 1:]).detach()  # (B, H)
            returns = lambda_returns(rewards, values, continues, c.discount, c.lam)  # (B, H)
        # weight of step t: the probability the imagined episode is still going at t
        alive = torch.cat([torch.ones_like(continues[:, :1]), continues[:, :-1].cumprod(1)], dim=1)
        scale = self.return_scale.update(returns)
        features, values = features.detach(), values.detach()
        with torch.no_grad():
            slow_values = self.slow_critic.value(features[:, :-1])

        policy = self.actor(features[:, :-1])
        entropy = policy.entropy()  # (B, H)
        if dynamics:
            objective = returns / scale
        else:
            objective = policy.log_prob(actions) * (returns - values[:, :-1]) / scale
        actor_loss = -(alive * (objective + c.entropy * entropy)).mean()
        taught = teacher is not None and c.imitation > 0
        if taught:
            picked = torch.randint(len(teacher), (c.batch_size,), generator=generator)
            starts_taught, states_taught, targets = teacher.batch(picked)
            mode = self.actor.mode(self.read_features(world_model, starts_taught, states_taught))
            errors = (mode - targets).square().sum(-1)  # (B,)
            if c.imitation_filter:
                with torch.no_grad():
                    planner = self.one_step_value(world_model, starts_taught, states_taught, targets)
                    better = planner > self.one_step_value(world_model, starts_taught, states_taught, mode)
                errors = errors * better
            imitation = errors.mean()
            actor_loss = actor_loss + c.imitation * imitation
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), 100.0)
        self.actor_optimizer.step()

        returns = returns.detach()
        logits = self.critic(features[:, :-1])
        twohot = self.critic.twohot
        critic_loss = twohot.loss(logits, returns) + c.slow_critic_weight * twohot.loss(logits, slow_values)
        critic_loss = (alive * critic_loss).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), 100.0)
        self.critic_optimizer.step()
        with torch.no_grad():
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
                slow.lerp_(fast, c.slow_critic_rate)
        return {
            "loss/actor": float(actor_loss.detach()),
            "loss/critic": float(critic_loss.detach()),
            "imagined_reward": float(rewards.detach().mean()),
            "return": float(returns.mean()),
            "value": float(values.mean()),
            "return_scale": float(scale),
            "entropy": float(entropy.detach().mean()),
            **({"imitation": float(imitation.detach())} if taught else {}),
        }

    def one_step_value(self, world_model, latents: Tensor, states: Tensor | None, actions: Tensor) -> Tensor:
        """Actions `(B, A)` (the actor's units) scored from latents `(B, N, D)` and their observed
        states: the predicted reward of the step they lead to plus the discounted critic value
        there `(B,)`."""
        following, _ = world_model.step(latents, self.to_model_actions(actions), states)
        value = self.critic.value(self.read_features(world_model, following))
        reward, going_on = world_model.predict_reward(following), world_model.predict_continue(following)
        return reward + self.config.discount * going_on * value

    # ------------------------------------------------------------------ saving

    def settings(self) -> dict:
        return {
            "latent_shape": list(self.latent_shape),
            "action_dim": self.action_dim,
            "discrete": self.discrete,
            "state_dim": self.state_dim,
            "config": dataclasses.asdict(self.config),
        }

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """`agent.json` (shapes and config) and `agent.safetensors` (networks, bounds, return scale)."""
        directory = Path(directory)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / AGENT_WEIGHTS, lambda tmp: save_file(weights, str(tmp)))
        text = json.dumps(self.settings(), indent=2) + "\n"
        atomic_write(directory / AGENT_FILE, lambda tmp: tmp.write_text(text))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> Agent:
        directory = Path(directory)
        if not (directory / AGENT_FILE).is_file():
            raise FileNotFoundError(f"{directory} holds no {AGENT_FILE}: give a train-agent run directory")
        settings = json.loads((directory / AGENT_FILE).read_text())
        agent = cls(
            tuple(settings["latent_shape"]),
            settings["action_dim"],
            discrete=settings["discrete"],
            state_dim=settings.get("state_dim", 0),  # agents saved before states were read: none
            config=AgentConfig(**settings["config"]),
        )
        agent.load_state_dict(load_file(str(directory / AGENT_WEIGHTS)))
        return agent


def check_world_model(world_model, config: AgentConfig) -> None:
    """One-line errors for a world model an agent with `config` cannot learn in."""
    if world_model.reward_head is None:
        raise ValueError(
            "the world model has no reward head to learn from: train it with train-wm on a dataset with "
            "next.reward (loss.reward > 0)"
        )
    if world_model.action_dim is None:
        raise ValueError(
            "the world model has no action input yet: call world_model.add_action_input(action_dim)"
        )
    if config.pessimism and world_model.ensemble is None:
        raise ValueError(
            "agent.pessimism needs the world model's ensemble disagreement: train it with "
            "uncertainty.ensemble > 0, or set agent.pessimism=0"
        )


def learn_with_world_model(
    world_model,
    data=None,
    *,
    agent: Agent | None = None,
    config: AgentConfig | None = None,
    steps: int | None = None,
    seed: int = 0,
    on_step=None,
) -> Agent:
    """Train an agent (a new one for the world model's latents and actions, or `agent`) for
    `steps` updates (default `config.steps`) on rollouts imagined from `data`'s start states (see
    `start_states`). `on_step(step, metrics)` is called after each update. Returns the agent."""
    config = agent.config if agent is not None else config or AgentConfig()
    check_world_model(world_model, config)
    generator = torch.Generator().manual_seed(seed)
    starts = start_states(world_model, data, config.history, generator)
    if agent is None:
        agent = Agent.for_world_model(world_model, tuple(starts.latents.shape[-2:]), config=config)
    teacher = label_starts(world_model, agent, starts, seed=seed)
    training = world_model.training
    trainable = [p for p in world_model.parameters() if p.requires_grad]
    world_model.eval().requires_grad_(False)  # gradients may pass through it, never into it
    try:
        for step in range(agent.config.steps if steps is None else steps):
            picked = torch.randint(len(starts), (agent.config.batch_size,), generator=generator)
            latents, states, history = starts.batch(world_model, picked)
            metrics = agent.update(world_model, latents, states, generator, history, teacher)
            if on_step is not None:
                on_step(step, metrics)
    finally:
        world_model.train(training)
        for parameter in trainable:
            parameter.requires_grad_(True)
    return agent
