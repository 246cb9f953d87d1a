"""Planners on dynamics with known optima, bounds, the MPC loop on a small env, cached rollouts."""

import json

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from vjepa_world import VideoEncoder, WorldModel
from vjepa_world.cli import main
from vjepa_world.config import get_preset
from vjepa_world.data.video import read_clip_frames
from vjepa_world.planning import (
    EpisodeResult,
    PlannerConfig,
    goal_energy,
    plan_actions,
    planner_config,
    run_mpc_episode,
    run_random_episode,
    seconds_per_action,
)

GAIN = torch.tensor([[1.0, 0.5], [0.0, 2.0]])  # z_{t+1} = z_t + GAIN @ a_t


def linear_rollout(start: torch.Tensor):
    """Known dynamics in a 2-D latent (N = 1 token): actions (S, H, 2) -> latents (S, H, 1, 2)."""
    return lambda actions: (start + torch.cumsum(actions @ GAIN.T, dim=1))[:, :, None]


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_planners_find_the_optimum_of_linear_dynamics(method):
    start, goal = torch.tensor([0.2, -0.3]), torch.tensor([0.9, 0.5])
    config = PlannerConfig(method=method, horizon=1, samples=300, iterations=15, energy="l2")
    low, high = -torch.ones(2), torch.ones(2)
    plan = plan_actions(
        linear_rollout(start),
        goal_energy(goal[None], "l2"),
        low,
        high,
        config,
        generator=torch.Generator().manual_seed(0),
    )
    optimum = torch.linalg.solve(GAIN, goal - start)  # (0.5, 0.4): inside the bounds
    torch.testing.assert_close(plan.actions[0], optimum, atol=0.03, rtol=0)
    assert plan.energies[-1] < 1e-3 and plan.energies[-1] <= plan.energies[0]


def test_quadratic_energy_summed_over_the_horizon_and_bounds():
    """Sum of squared distances to a goal 2 units away over H = 2 steps of z += a: the optimum
    reaches the goal at once and stays, (2, 0); with actions bounded by 1 it is (1, 1)."""
    rollout = lambda actions: torch.cumsum(actions, dim=1)[:, :, None]  # 1-D latent from 0
    config = PlannerConfig(horizon=2, samples=400, iterations=15, energy="l2", reduce="sum")
    plan = plan_actions(
        rollout, goal_energy(torch.tensor([[2.0]]), "l2", "sum"), -torch.ones(1), torch.ones(1), config
    )
    torch.testing.assert_close(plan.actions[:, 0], torch.ones(2), atol=0.02, rtol=0)
    wide = plan_actions(
        rollout,
        goal_energy(torch.tensor([[2.0]]), "l2", "sum"),
        -3 * torch.ones(1),
        3 * torch.ones(1),
        config,
    )
    torch.testing.assert_close(wide.actions[:, 0], torch.tensor([2.0, 0.0]), atol=0.05, rtol=0)


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_actions_stay_within_bounds_when_the_goal_is_out_of_reach(method):
    low, high = torch.tensor([-0.5, -0.2]), torch.tensor([0.3, 0.4])
    seen = []

    def rollout(actions):
        seen.append(actions)
        return linear_rollout(torch.zeros(2))(actions)

    config = PlannerConfig(method=method, horizon=3, samples=200, iterations=15)
    plan = plan_actions(rollout, goal_energy(torch.tensor([[10.0, 10.0]])), low, high, config)
    every = torch.cat(seen)
    assert (every >= low).all() and (every <= high).all()
    torch.testing.assert_close(plan.actions, high.expand(3, 2), atol=0.03, rtol=0)


class PointGoalEnv(gymnasium.Env):
    """A dot on a 16x16 image moved by 2-D actions (0.1 per unit); the goal is a dot elsewhere."""

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _image(self, position):
        image = np.zeros((16, 16, 3), np.uint8)
        row, col = np.clip(np.round(position * 15), 0, 15).astype(int)
        image[row, col] = 255
        return image

    def _info(self):
        distance = float(np.linalg.norm(self.position - self.goal))
        return {"distance": distance, "is_success": distance < 0.08}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.goal = self.np_random.uniform(0.1, 0.9, 2), self.np_random.uniform(0.1, 0.9, 2)
        return self._image(self.position), {**self._info(), "goal_image": self._image(self.goal)}

    def step(self, action):
        self.position = np.clip(self.position + 0.1 * np.clip(action, -1, 1), 0, 1)
        return self._image(self.position), 0.0, False, False, self._info()


class ScriptedWorldModel:
    """Reads the dot's position from the frame; predicts position + 0.1 * cumulative actions."""

    action_dim = 2

    def encode(self, frames):  # (B, 16, 16, 3) uint8 -> (B, 1, 2)
        flat = frames[..., 0].flatten(1).argmax(1)
        return (torch.stack([flat // 16, flat % 16], dim=1).float() / 15)[:, None]

    def observe(self, latents, actions, states=None):
        return None

    def rollout(self, latents, actions, states=None, history=None):  # (1, 1, 2), (S, H, 2) -> (S, H, 1, 2)
        return latents[:, None] + 0.1 * torch.cumsum(actions, dim=1)[:, :, None]


def test_mpc_loop_reaches_the_goal_with_a_scripted_world_model():
    env = PointGoalEnv()
    config = planner_config("fast", energy="l2")
    results = [run_mpc_episode(env, ScriptedWorldModel(), config, seed=s, max_steps=30) for s in range(4)]
    assert all(r.success and r.reached for r in results)
    assert all(r.final_distance < 0.1 for r in results)
    assert results[0].frames.shape[1:] == (16, 16, 3) and len(results[0].energies) == results[0].steps
    random = [run_random_episode(env, seed=s, max_steps=30) for s in range(4)]
    assert np.mean([r.final_distance for r in random]) > np.mean([r.final_distance for r in results])


def test_cached_rollouts_equal_recomputed_ones():
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    world_model = WorldModel(encoder, action_dim=2, dim=32, depth=2, num_heads=2).eval()
    latents = torch.nn.functional.layer_norm(torch.randn(1, 4, 16, 64), (64,))
    taken, candidates = torch.randn(1, 3, 2), torch.rand(7, 3, 2) * 2 - 1
    with torch.no_grad():
        history = world_model.observe(latents[:, :3], taken)
        cached = world_model.rollout(latents[:, 3], candidates, history=history)
        again = world_model.rollout(latents[:, 3], candidates, history=history)  # history is not consumed
        recomputed = world_model.rollout_uncached(latents[:, 3], candidates, history=(latents[:, :3], taken))
    assert cached.shape == (7, 3, 16, 64)
    torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, cached, atol=0, rtol=0)


def test_bad_planner_settings_and_envs_without_goals_are_errors():
    with pytest.raises(ValueError, match="method must be"):
        PlannerConfig(method="random-shooting")
    with pytest.raises(ValueError, match="elites"):
        PlannerConfig(samples=5, elites=10)
    with pytest.raises(ValueError, match="unknown planner preset"):
        planner_config("fastest")

    class NoGoal(PointGoalEnv):
        def reset(self, **kwargs):
            frame, info = super().reset(**kwargs)
            return frame, {k: v for k, v in info.items() if k != "goal_image"}

    with pytest.raises(ValueError, match="goal_image"):
        run_mpc_episode(NoGoal(), ScriptedWorldModel(), PlannerConfig(), seed=0)


def test_plan_command_runs_episodes_and_writes_videos_plot_and_summary(tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)  # 32 px frames, 16 tokens
    WorldModel(encoder, action_dim=2, dim=32, depth=2, num_heads=2).save_pretrained(tmp_path / "wm")
    out = tmp_path / "plan"
    argv = ["plan", "--env", "vjepa_world/ReacherGoal-v0", "--world-model", str(tmp_path / "wm")]
    settings = ["--set", "planner.samples=16", "--set", "planner.iterations=2", "--set", "planner.elites=4"]
    assert (
        main([*argv, "--episodes", "2", "--steps", "5", "--planner", "fast", *settings, "--out", str(out)])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    keys = ("success_rate", "random_success_rate", "reached_rate", "final_distance", "seconds_per_action")
    for key in (*keys, "settings"):
        assert key in summary
    assert summary["settings"]["samples"] == 16 and summary["max_steps"] == 5
    assert [row["steps"] for row in summary["per_episode"]] == [5, 5]
    assert summary["seconds_per_action"] > 0
    assert (out / "energy_by_iteration.png").is_file()
    frames = read_clip_frames(out / "episode_001.mp4", range(6))  # 5 steps + the start
    assert frames.shape == (6, 256, 512, 3)  # observation | goal, upscaled 4x
    assert main([*argv, "--out", str(out), "--set", "planner.sample=3"]) == 2  # a typo is a one-line error


def test_seconds_per_action_counts_every_entry_of_every_episode():
    """A policy's decision call (0.5 s) among cheap playback calls weighs in full: (0.5 + 4 * 0.0)
    and (0.25 + 0.25 + 0.0 + 0.0) over 9 actions, where a median would report 0."""

    def episode(seconds):
        frames = np.zeros((len(seconds) + 1, 2, 2, 3), np.uint8)
        return EpisodeResult(False, False, None, len(seconds), seconds, frames, None, [])

    results = [episode([0.5, 0.0, 0.0, 0.0, 0.0]), episode([0.25, 0.25, 0.0, 0.0])]
    assert seconds_per_action(results) == pytest.approx(1.0 / 9)
    assert seconds_per_action([episode([])]) is None
