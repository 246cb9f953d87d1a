"""Rewards: the heads learn known rewards, planning maximises predicted returns without a goal image."""

import itertools
import json

import numpy as np
import pytest
import torch

from vjepa_world import VideoEncoder, WorldModel, get_preset
from vjepa_world.cli import main
from vjepa_world.envs import REACHER_REWARD_ID, ReacherRewardEnv, make_env
from vjepa_world.nn.heads import ContinueHead, RewardHead
from vjepa_world.planning import PlannerConfig, make_objective, plan_actions, reward_energy, run_mpc_episode


def test_the_reward_head_learns_a_known_reward_of_any_scale_and_the_continue_head_a_known_end():
    """reward = 100 if z_0 > 1, 5 if z_0 > 0, else -1; continue = 0 when z_1 > 1.5 (the episode ends)."""
    torch.manual_seed(0)
    latents = torch.randn(4096, 1, 8)
    rewards = torch.where(latents[:, 0, 0] > 1, 100.0, torch.where(latents[:, 0, 0] > 0, 5.0, -1.0))
    continues = (latents[:, 0, 1] <= 1.5).float()
    reward_head, continue_head = (
        RewardHead(latent_dim=8, hidden_dim=64),
        ContinueHead(latent_dim=8, hidden_dim=64),
    )
    assert torch.equal(reward_head.predict(latents[:4]), torch.zeros(4))  # zero-initialised: predicts 0
    parameters = [*reward_head.parameters(), *continue_head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=3e-3)
    for _step in range(300):
        rows = torch.randint(0, 3072, (256,))
        loss = reward_head.loss(latents[rows], rewards[rows]).mean()
        loss = loss + continue_head.loss(latents[rows], continues[rows]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = slice(3072, None)
        predicted = reward_head.predict(latents[held_out])
        edge = torch.minimum((latents[held_out, 0, 0] - 1).abs(), latents[held_out, 0, 0].abs())
        error = (predicted - rewards[held_out]).abs()
        right = error <= 0.1 * rewards[held_out].abs() + 0.5
    assert right[edge > 0.1].float().mean() > 0.97  # off the steps, within 10% (+0.5)
    with torch.no_grad():
        accuracy = (
            ((continue_head.predict(latents[held_out]) > 0.5).float() == continues[held_out]).float().mean()
        )
    assert accuracy > 0.97


class RewardOnly(torch.nn.Module):
    """A world model whose latents are a 1-D position moved by the action; reward = the position."""

    action_dim = 1

    def __init__(self):
        super().__init__()
        self.reward_head = True

    def predict_reward(self, latents):
        return latents[..., 0, 0]

    def predict_continue(self, latents):
        return torch.full(latents.shape[:-2], 0.5)


def test_reward_energy_is_minus_the_predicted_return_counted_while_the_episode_goes_on():
    predicted = torch.tensor([[1.0, 2.0, 4.0], [3.0, 0.0, 0.0]])[..., None, None]  # (S=2, H=3, 1, 1)
    energies = reward_energy(RewardOnly())(predicted)
    torch.testing.assert_close(energies, torch.tensor([-(1 + 0.5 * 2 + 0.25 * 4), -3.0]))
    assert float(reward_energy(RewardOnly(), reduce="final")(predicted)[0]) == pytest.approx(-0.25 * 4)
    # CEM finds the actions that climb highest: all +1 within the bounds
    rollout = lambda actions: actions.cumsum(dim=1)[..., None]  # position after each step (S, H, 1, 1)
    config = PlannerConfig(objective="reward", horizon=3, samples=64, elites=8, iterations=8)
    plan = plan_actions(
        rollout, make_objective(RewardOnly(), None, config), torch.tensor([-1.0]), torch.tensor([1.0]), config
    )
    assert (plan.actions > 0.9).all()
    with pytest.raises(ValueError, match="needs a goal image"):
        make_objective(RewardOnly(), None, PlannerConfig(objective="latent"))
    with pytest.raises(ValueError, match="goal_weight"):
        PlannerConfig(objective="latent", goal_weight=1.0)


def test_the_reward_reacher_draws_its_target_and_rewards_by_dm_control_reacher_easy():
    """Arm stretched along x: the fingertip at (0.21, 0). Reward 1 within 0.05 + 0.01 m of the target."""
    env = ReacherRewardEnv(image_size=64)
    for target, start, inside in [
        ([0.21, 0.0], [0.0, 0.0], True),  # on the fingertip
        ([0.16, 0.0], [0.0, 0.0], True),  # 0.05 m away: the surfaces overlap
        ([0.14, 0.0], [0.0, 0.0], False),  # 0.07 m away
        ([0.21, 0.0], [np.pi / 2, 0.0], False),  # arm pointing up: 0.3 m away
    ]:
        frame, info = env.reset(seed=0, options={"start": start, "target": target})
        assert info["goal_image"] is None
        _, reward, *_, info = env.step(np.zeros(2))
        assert reward == float(inside) and info["is_success"] == inside
        expected = np.linalg.norm(np.array(target) - 0.21 * np.array([np.cos(start[0]), np.sin(start[0])]))
        assert info["distance"] == pytest.approx(expected, abs=0.002)
    r, g, b = frame.astype(int).transpose(2, 0, 1)
    assert ((r > 60) & (r > 2 * g) & (r > 2 * b)).sum() > 60  # the red disc (0.05 m: ~6 px radius) is drawn
    starts = [env.reset(seed=s)[1] for s in range(20)]
    assert all(0.05 <= np.linalg.norm(i["target"]) <= 0.2 + 1e-9 and not i["is_success"] for i in starts)
    env.close()


def test_the_noisy_reacher_disturbs_the_torques_and_moves_the_target():
    env = make_env("vjepa_world/ReacherRewardNoisy-v0")
    _, first = env.reset(seed=3)
    targets, tips = [first["target"]], []
    for _ in range(100):
        _, _, _, _, info = env.step(np.zeros(2, np.float32))
        targets.append(info["target"])
        tips.append(info["fingertip"])
    jumps = sum(not np.allclose(a, b) for a, b in itertools.pairwise(targets))
    assert 1 <= jumps <= 15  # 5% per step
    assert np.ptp(np.array(tips), axis=0).max() > 0.01  # zero torque, yet the arm moves: disturbances
    env.close()


def test_planning_with_the_reward_objective_needs_no_goal_image(tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    reward_head = RewardHead(tokens=16, latent_dim=64, hidden_dim=32)
    world_model = WorldModel(encoder, action_dim=2, dim=32, depth=2, num_heads=2, reward_head=reward_head)
    env = make_env(REACHER_REWARD_ID, image_size=32)
    config = PlannerConfig(objective="reward", horizon=2, samples=8, elites=2, iterations=2)
    result = run_mpc_episode(env, world_model.eval(), config, seed=0, max_steps=4)
    assert result.goal_image is None and len(result.rewards) == 4 and result.steps == 4
    with pytest.raises(ValueError, match="no info\\['goal_image'\\]"):
        run_mpc_episode(env, world_model, PlannerConfig(), seed=0, max_steps=2)
    env.close()
    world_model.save_pretrained(tmp_path / "wm")
    argv = [
        "plan",
        "--env",
        REACHER_REWARD_ID,
        "--world-model",
        str(tmp_path / "wm"),
        "--objective",
        "reward",
    ]
    argv += ["--episodes", "1", "--steps", "3", "--size", "32", "--preset", "fast", "--set", "samples=12"]
    assert main([*argv, "--out", str(tmp_path / "plan")]) == 0
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert summary["settings"]["objective"] == "reward" and "return" in summary and "random_return" in summary
    no_head = WorldModel(encoder, action_dim=2, dim=32, depth=2, num_heads=2)
    with pytest.raises(ValueError, match="needs a world model with a reward head"):
        make_objective(no_head, None, config)
