"""The learned goal energy: its sampler, its loss on hand values, and a chain where the shortest
path is known."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from vjepa_world.nn.heads import DistanceHeadConfig, TemporalDistanceHead
from vjepa_world.train.goal_distance import (
    GoalDistanceConfig,
    TransitionSampler,
    default_steps,
    expectile_weights,
    goal_distance_loss,
    train_goal_distance,
)


def test_default_steps_keep_a_floor_and_grow_with_the_square_root_of_the_frames():
    assert default_steps(50) == default_steps(20_000) == 12_000  # up to 400 episodes of 50 steps
    assert default_steps(80_000) == 24_000  # four times the frames, twice the steps
    assert default_steps(160_000) == 34_000 and isinstance(default_steps(160_000), int)  # 12,000 x sqrt(8)


def test_expectile_weights_lean_on_positive_advantages():
    weights = expectile_weights(torch.tensor([-1.0, 0.0, 2.0]), 0.9)
    torch.testing.assert_close(weights, torch.tensor([0.1, 0.9, 0.9]))


def test_sampler_keeps_transitions_and_trajectory_goals_within_their_episode():
    lengths = [5, 1, 7, 3]  # flat frames: episode 0 = 0..4, 1 = 5, 2 = 6..12, 3 = 13..15
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    config = GoalDistanceConfig(goal_mix=(0.0, 1.0, 0.0), discount=0.5)
    frames, following, goals, reached = TransitionSampler(lengths, config, torch.Generator().manual_seed(0))(
        2000
    )
    assert set(frames.tolist()) == {0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 13, 14}  # every frame with a next one
    assert (following == frames + 1).all() and (episode_of[following] == episode_of[frames]).all()
    assert (goals > frames).all() and (episode_of[goals] == episode_of[frames]).all() and not reached.any()
    config = GoalDistanceConfig(goal_mix=(1.0, 0.0, 0.0))
    _, _, _, reached = TransitionSampler(lengths, config, torch.Generator())(100)
    assert reached.all()
    with pytest.raises(ValueError, match="at least 2 frames"):
        TransitionSampler([1, 1], config, torch.Generator())


def test_loss_is_zero_at_the_fixed_point_of_the_backup():
    """A head whose distances already satisfy d(s, g) = 1 + discount * d(s', g) has zero loss."""
    head = TemporalDistanceHead(DistanceHeadConfig(tokens=1, latent_dim=1, embed_dim=1, ensemble=1))
    with torch.no_grad():  # phi(x) = x exactly (LayerNorm cannot: use a plain identity embedding)
        head.embeddings[0] = torch.nn.Identity()
    discount = 0.5
    # along a line, from s = 3 toward g = 0 through s' = 1: d(s, g) = 3, d(s', g) = 1 ... use values
    # that satisfy the backup: d(s) = 1 + 0.5 * d(s') -> s = 1.5, s' = 1
    latents, following, goals = torch.tensor([[[1.5]]]), torch.tensor([[[1.0]]]), torch.tensor([[[0.0]]])
    loss, _ = goal_distance_loss(head, head, latents, following, goals, torch.tensor([False]), discount, 0.9)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    loss, _ = goal_distance_loss(head, head, goals, following, goals, torch.tensor([True]), discount, 0.9)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)  # at the goal: reward 0, no bootstrap, d = 0
    # d(s) = 1 (too short for the backup's 1.5): advantage < 0, weight 1 - 0.9; d(s) = 3 (too long): 0.9
    loss, _ = goal_distance_loss(
        head, head, following, following, goals, torch.tensor([False]), discount, 0.9
    )
    assert float(loss) == pytest.approx(0.1 * (1.5 - 1.0) ** 2)
    far = torch.tensor([[[3.0]]])
    loss, _ = goal_distance_loss(head, head, far, following, goals, torch.tensor([False]), discount, 0.9)
    assert float(loss) == pytest.approx(0.9 * (3.0 - 1.5) ** 2)


def test_learns_shortest_paths_on_a_chain_from_random_walks():
    """Episodes random-walk on a 12-state chain (one-hot latents). Random-walk hitting times grow
    with the square of the gap, shortest paths linearly; the learned distance must follow the latter."""
    rng = np.random.default_rng(0)
    states, episodes = 12, []
    for _ in range(200):
        walk = [rng.integers(states)]
        for _ in range(39):
            walk.append(int(np.clip(walk[-1] + rng.choice([-1, 1]), 0, states - 1)))
        episodes.append(
            torch.nn.functional.one_hot(torch.tensor(walk), states).float()[:, None]
        )  # (T, 1, 12)
    torch.manual_seed(0)
    head = TemporalDistanceHead(DistanceHeadConfig(tokens=1, latent_dim=states, embed_dim=8, hidden_dim=64))
    config = GoalDistanceConfig(steps=500, batch_size=256, lr=2e-3, discount=0.9, target_ema=0.02)
    train_goal_distance(head, episodes, config, progress=False)
    one_hot = torch.eye(states)[:, None]  # (12, 1, 12)
    with torch.no_grad():
        learned = head.distance(one_hot[:, None], one_hot[None]).numpy()  # (12, 12)
    gap = np.abs(np.arange(states)[:, None] - np.arange(states)[None])
    shortest = (1 - 0.9**gap) / (1 - 0.9)  # discounted steps along the shortest path
    assert np.abs(np.diag(learned)).max() < 1e-3
    assert spearmanr(learned[gap > 0], gap[gap > 0])[0] > 0.9
    assert np.abs(learned - shortest)[gap <= 3].mean() < 0.5  # close to the shortest path's, nearby


def test_the_default_objective_is_the_distance_head_when_there_is_one():
    from types import SimpleNamespace

    from vjepa_world.planning import PlannerConfig, make_objective, resolve_objective

    head = TemporalDistanceHead(DistanceHeadConfig(tokens=1, latent_dim=4, embed_dim=3))
    with_head, without = SimpleNamespace(distance_head=head), SimpleNamespace(distance_head=None)
    config = PlannerConfig()
    assert config.objective == "auto"
    assert resolve_objective(with_head, config).objective == "distance"
    assert resolve_objective(without, config).objective == "latent"
    assert resolve_objective(without, PlannerConfig(objective="state")).objective == "state"  # explicit stays
    goal, predicted = torch.randn(1, 4), torch.randn(5, 2, 1, 4)  # (N, D), (S, H, N, D)
    expected = head.distance(predicted, goal).sum(1)  # summed over the horizon
    assert torch.allclose(make_objective(with_head, goal, config)(predicted), expected)
    latent = predicted.sub(goal).square().mean(dim=(2, 3)).sum(1)
    assert torch.allclose(make_objective(without, goal, config)(predicted), latent)
