"""The agent's pieces against hand computations, and learning inside a world model of a known MDP."""

import copy
import math

import pytest
import torch
from torch import nn

from vjepa_world.actor_critic import ReturnScale, lambda_returns
from vjepa_world.agent import Agent, AgentConfig, learn_with_world_model
from vjepa_world.agent_pixels import StartStates
from vjepa_world.nn.heads import TwoHot, symexp, symlog
from vjepa_world.planner_teacher import PlannerTargets, label_starts, planner_targets


def test_symlog_and_symexp_are_inverse_and_compress_large_values():
    x = torch.tensor([-1e6, -20.0, -1.0, -1e-4, 0.0, 1e-4, 1.0, 20.0, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(
        symlog(torch.tensor([math.e - 1, -(math.e**2 - 1)])), torch.tensor([1.0, -2.0])
    )


def test_two_hot_splits_a_value_between_the_two_nearest_bins_and_decodes_it_back():
    twohot = TwoHot(bins=255)
    values = torch.tensor([0.0, 1.0, -3.5, 5.0, 123.4, -0.01, 2e6])
    weights = twohot.encode(values)
    assert weights.shape == (7, 255)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7))
    assert ((weights > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(twohot.decode(weights), values, rtol=1e-5, atol=1e-6)
    # by hand: symlog(1) = log 2 lies between bins k and k + 1 of linspace(-20, 20, 255)
    step = 40 / 254
    k = math.floor((math.log(2) + 20) / step)
    above = (math.log(2) + 20 - k * step) / step
    torch.testing.assert_close(weights[1, k : k + 2], torch.tensor([1 - above, above]))
    # beyond the range: the end bin; a loss that is lowest at the target's own encoding
    assert twohot.encode(torch.tensor([1e12]))[0, -1] == 1
    logits = torch.log(weights[3] + 1e-9)
    assert twohot.loss(logits, values[3]) < twohot.loss(logits, values[4])


def test_lambda_returns_match_a_hand_computation():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, -1.0, 4.0]])
    continues = torch.tensor([[1.0, 0.5, 1.0]])
    discount, lam = 0.9, 0.8
    r3 = 4.0  # the bootstrap: v_3
    r2 = 2.0 + 0.9 * 1.0 * (0.2 * 4.0 + 0.8 * r3)
    r1 = 0.0 + 0.9 * 0.5 * (0.2 * -1.0 + 0.8 * r2)  # the transition into step 2 continues with 0.5
    r0 = 1.0 + 0.9 * 1.0 * (0.2 * 1.0 + 0.8 * r1)
    expected = torch.tensor([[r0, r1, r2]])
    torch.testing.assert_close(lambda_returns(rewards, values, continues, discount, lam), expected)
    # lambda 0: one-step TD targets; lambda 1 with discount 1: the sum of rewards plus the last value
    one_step = rewards + discount * continues * values[:, 1:]
    torch.testing.assert_close(lambda_returns(rewards, values, continues, discount, 0.0), one_step)
    ones = torch.ones(1, 3)
    torch.testing.assert_close(
        lambda_returns(rewards, values, ones, 1.0, 1.0), torch.tensor([[7.0, 6.0, 6.0]])
    )


def test_return_scale_is_the_smoothed_percentile_range_floored_at_one():
    scale = ReturnScale(decay=0.5)
    returns = torch.arange(101, dtype=torch.float32)  # 5th percentile 5, 95th 95
    assert float(scale.update(returns)) == pytest.approx(90.0)
    assert float(scale.update(returns * 0)) == pytest.approx(45.0)  # 0.5 * 90 + 0.5 * 0
    small = ReturnScale()
    assert float(small.update(torch.linspace(0, 0.1, 50))) == 1.0  # small returns are not blown up


class ChainWorldModel(nn.Module):
    """A known MDP in the world model's interface: `length` positions on a line, latents one-hot
    `(1, length)`. An action moves one position right (continuous: a > 0; discrete: choice 1) or
    left, clamped at the ends; every step that ends on the last position earns 1, forever after
    if the agent stays. From position p the best discounted return is gamma^(k-1) / (1 - gamma)
    with k = max(length - 1 - p, 1) steps to get there (or to stay)."""

    def __init__(self, length: int = 6, discrete: bool = False):
        super().__init__()
        self.length, self.discrete = length, discrete
        self.action_dim, self.state_dim = (2 if discrete else 1), 0
        self.reward_head = True  # what learn_with_world_model checks for

    def imagined_states(self, current, horizon):
        return None

    def step(self, latents, actions, states=None, cache=None):
        position = latents[:, 0].argmax(-1)
        right = actions.argmax(-1) == 1 if self.discrete else actions[:, 0] > 0
        position = (position + torch.where(right, 1, -1)).clamp(0, self.length - 1)
        return nn.functional.one_hot(position, self.length).float()[:, None], cache

    def predict_reward(self, latents):
        return (latents[..., 0, -1] == 1).float()

    def predict_continue(self, latents):
        return torch.ones(latents.shape[:-2])

    def optimal_return(self, position: int, gamma: float, horizon: int) -> float:
        first = max(self.length - 1 - position, 1)  # step whose transition first earns
        return sum(gamma**t for t in range(first - 1, horizon))


def policy_return(agent, world_model, position, gamma, horizon) -> float:
    z = nn.functional.one_hot(torch.tensor([position]), world_model.length).float()[:, None]
    total = 0.0
    for t in range(horizon):
        z, _ = world_model.step(z, agent.act(z))
        total += gamma**t * float(world_model.predict_reward(z))
    return total


@pytest.mark.parametrize("discrete", [False, True])
def test_the_agent_learns_the_optimal_policy_of_a_known_mdp_inside_its_world_model(discrete):
    torch.manual_seed(0)
    world_model = ChainWorldModel(discrete=discrete)
    # the chain's steps are not differentiable: the actor learns from its log-probabilities
    config = AgentConfig(
        discount=0.9, hidden_dim=64, batch_size=64, lr=1e-3, entropy=1e-3, actor_gradient="reinforce"
    )
    starts = nn.functional.one_hot(torch.arange(6).repeat(20), 6).float()[:, None]  # (120, 1, 6)
    agent = Agent((1, 6), world_model.action_dim, discrete=discrete, config=config)
    gamma, horizon = config.discount, config.horizon
    optimal = sum(world_model.optimal_return(p, gamma, horizon) for p in range(6))
    before = sum(policy_return(agent, world_model, p, gamma, horizon) for p in range(6))
    history = []
    learn_with_world_model(world_model, starts, agent=agent, steps=40, on_step=lambda s, m: history.append(m))
    after = sum(policy_return(agent, world_model, p, gamma, horizon) for p in range(6))
    assert before < 0.8 * optimal
    assert after == pytest.approx(optimal, rel=1e-6)  # every position heads right and stays
    assert history[-1]["imagined_reward"] > 1.5 * history[0]["imagined_reward"]
    assert history[-1]["value"] > history[0]["value"]  # the critic follows (slowly: the slow critic)


class LineWorldModel(nn.Module):
    """A differentiable known task: the latent `(1, 1)` is a position x on a line, an action a in
    [-1, 1] moves it to x + 0.25 a, and the reward is -x'^2 (weights: one, so it is a module that
    gradients pass through without changing it). The best policy heads for 0 at full speed and
    stops there: a = clip(-4 x, -1, 1)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.25))
        self.action_dim, self.state_dim, self.reward_head = 1, 0, True

    def imagined_states(self, current, horizon):
        return None

    def step(self, latents, actions, states=None, cache=None):
        return latents + self.gain * actions[:, None, :1], cache

    def rollout(self, latents, actions, states=None):  # (S, 1, 1), (S, H, 1) -> (S, H, 1, 1)
        return latents[:, None] + self.gain * actions.cumsum(1)[..., None]

    def predict_reward(self, latents):
        return -latents[..., 0, 0].pow(2)

    def predict_continue(self, latents):
        return torch.ones(latents.shape[:-2])


def line_return(world_model, policy, starts, gamma, horizon) -> float:
    z, total = starts, 0.0
    for t in range(horizon):
        z, _ = world_model.step(z, policy(z))
        total += gamma**t * float(world_model.predict_reward(z).sum())
    return total


def test_dynamics_gradients_reach_the_best_policy_of_a_differentiable_task_and_leave_the_model_unchanged():
    torch.manual_seed(0)
    world_model = LineWorldModel()
    config = AgentConfig(discount=0.9, hidden_dim=64, batch_size=64, lr=3e-3, entropy=1e-4, horizon=8)
    starts = torch.linspace(-1, 1, 41)[:, None, None]  # (41, 1, 1)
    agent = Agent((1, 1), 1, config=config)
    assert agent.actor_gradient == "dynamics"  # "auto" for continuous actions
    best = lambda z: (-4 * z[:, 0]).clamp(-1, 1)
    with torch.no_grad():
        optimal = line_return(world_model, best, starts, 0.9, 8)
        before = line_return(world_model, agent.act, starts, 0.9, 8)
    learn_with_world_model(world_model, starts, agent=agent, steps=150)
    with torch.no_grad():
        after = line_return(world_model, agent.act, starts, 0.9, 8)
    assert before < 2 * optimal  # returns are negative: the untrained policy loses twice as much
    assert after == pytest.approx(optimal, rel=0.05)
    assert world_model.gain.item() == 0.25 and world_model.gain.grad is None
    assert world_model.gain.requires_grad  # restored after learning


class UnsureEnsemble(nn.Module):
    """An ensemble whose members disagree by (x' - 0.5)^2 on a step of LineWorldModel that lands on x'."""

    def disagreement(self, latents, actions, predicted):
        return (predicted[..., 0, 0] - 0.5).pow(2)


@pytest.mark.parametrize(("pessimism", "settles_at"), [(0.0, 0.0), (1.0, 0.25)])
def test_pessimism_trades_reward_for_the_ensembles_agreement(pessimism, settles_at):
    """Reward -x^2 minus pessimism x (x - 0.5)^2: the best place to stay moves from 0 to 0.25."""
    torch.manual_seed(0)
    world_model = LineWorldModel()
    world_model.ensemble = UnsureEnsemble()
    config = AgentConfig(
        discount=0.9, hidden_dim=64, batch_size=64, lr=3e-3, entropy=1e-4, horizon=8, pessimism=pessimism
    )
    starts = torch.linspace(-1, 1, 41)[:, None, None]  # (41, 1, 1)
    agent = learn_with_world_model(world_model, starts, config=config, steps=150)
    with torch.no_grad():
        z = starts
        for _ in range(12):
            z, _ = world_model.step(z, agent.act(z))
    assert z[:, 0, 0].mean().item() == pytest.approx(settles_at, abs=0.03)
    assert z[:, 0, 0].std().item() < 0.03


def test_pessimism_needs_an_ensemble():
    world_model = LineWorldModel()
    world_model.ensemble = None
    with pytest.raises(ValueError, match=r"agent.pessimism needs .* uncertainty.ensemble > 0"):
        learn_with_world_model(world_model, torch.zeros(4, 1, 1), config=AgentConfig(pessimism=1.0))


def test_dynamics_gradients_need_continuous_actions():
    with pytest.raises(ValueError, match="continuous actions"):
        Agent((1, 6), 2, discrete=True, config=AgentConfig(actor_gradient="dynamics"))


def test_learning_needs_a_reward_head():
    class NoReward(ChainWorldModel):
        def __init__(self):
            super().__init__()
            self.reward_head = None

    with pytest.raises(ValueError, match="no reward head"):
        learn_with_world_model(NoReward(), torch.zeros(4, 1, 6))


def test_an_agent_round_trips_through_a_directory(tmp_path):
    agent = Agent((1, 6), 3, low=torch.tensor([-2.0, 0.0, -1.0]), high=torch.tensor([2.0, 1.0, 1.0]))
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_()
    agent.save_pretrained(tmp_path)
    loaded = Agent.from_pretrained(tmp_path)
    z = torch.randn(5, 1, 6)
    torch.testing.assert_close(loaded.act(z), agent.act(z))
    actions = agent.act(z)
    assert (actions >= agent.low).all() and (actions <= agent.high).all()
    torch.testing.assert_close(loaded.critic.value(z.flatten(-2)), agent.critic.value(z.flatten(-2)))


@pytest.mark.parametrize("discrete", [False, True])
def test_the_actors_mode_is_its_distributions_mode(discrete):
    """`Actor.mode` skips building the distribution; it must pick what the distribution would."""
    agent = Agent((1, 6), 3, discrete=discrete)
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_()
    features = torch.randn(64, 6)
    policy = agent.actor(features)
    expected = nn.functional.one_hot(policy.probs.argmax(-1), 3).float() if discrete else policy.mean
    torch.testing.assert_close(agent.actor.mode(features), expected)


@pytest.mark.parametrize("value_gradient", [False, True])
def test_the_actor_follows_the_critics_slope_only_with_value_gradient(value_gradient):
    """Dynamics gradients: without value_gradient two critics of different slope give the actor the
    same gradient direction (only the return scale differs); with it they do not."""
    world_model = LineWorldModel()
    config = AgentConfig(entropy=0.0, hidden_dim=16, batch_size=8, horizon=2, value_gradient=value_gradient)
    torch.manual_seed(0)
    first = Agent((1, 1), 1, config=config)
    second = copy.deepcopy(first)
    with torch.no_grad():
        for parameter in second.critic.parameters():
            parameter.add_(torch.randn_like(parameter))
    starts = torch.linspace(-1, 1, 8)[:, None, None]
    for agent in (first, second):
        agent.update(world_model, starts, generator=torch.Generator().manual_seed(0))
    gradient = lambda agent: torch.cat([p.grad.flatten() for p in agent.actor.parameters()])
    cosine = nn.functional.cosine_similarity(gradient(first), gradient(second), dim=0).item()
    if value_gradient:
        assert cosine < 0.99
    else:
        assert cosine == pytest.approx(1.0, abs=1e-5)


def test_value_gradient_is_refused_where_reinforce_holds_the_values_constant():
    with pytest.raises(ValueError, match=r"value_gradient acts on dynamics gradients only"):
        Agent((1, 1), 3, discrete=True, config=AgentConfig(value_gradient=True))


def test_the_planners_targets_are_the_best_first_actions_of_a_known_task():
    """On the line (reward -x'^2 over CEM's 3 steps) the best first action is clip(-4 x, -1, 1); a
    box of [-2, 2] plans clip(-4 x, -2, 2), given to the actor in its [-1, 1] units (halved)."""
    world_model = LineWorldModel()
    starts = torch.linspace(-1, 1, 9)[:, None, None]  # (9, 1, 1): one batched search for all
    targets = planner_targets(world_model, starts, None, -torch.ones(1), torch.ones(1), batch_size=32)
    assert targets.actions.shape == (9, 1)
    best = (-4 * starts[:, 0]).clamp(-1, 1)  # (9, 1)
    torch.testing.assert_close(targets.actions, best, atol=0.1, rtol=0)
    wide = planner_targets(world_model, starts, None, -2 * torch.ones(1), 2 * torch.ones(1), batch_size=4)
    torch.testing.assert_close(wide.actions, (-4 * starts[:, 0]).clamp(-2, 2) / 2, atol=0.05, rtol=0)


class FlatLineWorldModel(LineWorldModel):
    """The line with no reward anywhere: whatever the actor learns, it learns from the teacher."""

    def predict_reward(self, latents):
        return torch.zeros(latents.shape[:-2])


@pytest.mark.parametrize("imitation", [0.0, 10.0])
def test_imitation_pulls_the_actors_mode_to_the_planners_actions(imitation):
    torch.manual_seed(0)
    starts = torch.linspace(-1, 1, 41)[:, None, None]  # (41, 1, 1)
    unfiltered = {"imitation_filter": False} if imitation else {}  # the flat reward would filter all
    config = AgentConfig(hidden_dim=64, batch_size=64, lr=3e-3, horizon=1, imitation=imitation, **unfiltered)
    agent = Agent((1, 1), 1, config=config)
    teacher = PlannerTargets(starts, None, 0.5 * starts[:, 0])  # a known target: a = x / 2
    history = [agent.update(FlatLineWorldModel(), starts, teacher=teacher) for _ in range(200)]
    with torch.no_grad():
        error = (agent.act(starts) - teacher.actions).abs().max()
    if imitation:
        assert error < 0.05
        assert history[-1]["imitation"] < 0.01 * history[0]["imitation"]
    else:  # the flat reward teaches nothing: the actor stays near its initial zero-mean output
        assert error > 0.4
        assert "imitation" not in history[-1]


@pytest.mark.parametrize("imitation_filter", [False, True])
def test_the_filter_imitates_the_planner_only_where_its_action_scores_higher(imitation_filter):
    """On the line (reward -x'^2) a teacher right on the left half (a = clip(-4 x, -1, 1)) and wrong
    on the right half (a = 1, away from 0): filtered, the wrong half is ignored and the actor learns
    the best policy everywhere; unfiltered, it follows the wrong half away from 0."""
    torch.manual_seed(0)
    world_model = LineWorldModel()
    starts = torch.linspace(-1, 1, 41)[:, None, None]  # (41, 1, 1)
    x = starts[:, 0]
    teacher = PlannerTargets(starts, None, torch.where(x < 0, (-4 * x).clamp(-1, 1), torch.ones_like(x)))
    config = AgentConfig(
        discount=0.9, hidden_dim=64, batch_size=64, lr=3e-3, entropy=1e-4, horizon=8, imitation=10.0,
        imitation_filter=imitation_filter,
    )  # fmt: skip
    agent = Agent((1, 1), 1, config=config)
    for _ in range(200):
        agent.update(world_model, starts, teacher=teacher)
    with torch.no_grad():
        moves = agent.act(starts[x[:, 0] > 0.3])  # (14, 1): the best move is -1
    if imitation_filter:
        assert moves.max() < -0.5  # toward 0 (the teacher says +1)
    else:
        assert moves.min() > 0.5


def test_learning_labels_its_starts_with_the_planner_when_imitation_is_on():
    world_model, starts = LineWorldModel(), StartStates(torch.linspace(-1, 1, 41)[:, None, None])
    config = AgentConfig(imitation=1.0, imitation_starts=20)
    taught = label_starts(world_model, Agent((1, 1), 1, config=config), starts, seed=0)
    assert len(taught) == 20 and taught.latents.shape == (20, 1, 1)
    again = label_starts(world_model, Agent((1, 1), 1, config=config), starts, seed=0)
    torch.testing.assert_close(again.actions, taught.actions)  # a resumed run is taught the same
    assert label_starts(world_model, Agent((1, 1), 1), starts, seed=0) is None  # imitation 0: no planning
    with pytest.raises(ValueError, match=r"agent\.imitation needs continuous actions"):
        label_starts(world_model, Agent((1, 1), 2, discrete=True, config=config), starts, seed=0)
    with pytest.raises(ValueError, match="need imitation >= 0"):
        AgentConfig(imitation=-1.0)
    for shaping in ({"imitation_starts": 20}, {"imitation_filter": False}):
        with pytest.raises(ValueError, match=r"agent\.imitation 0 has none"):
            AgentConfig(**shaping)
