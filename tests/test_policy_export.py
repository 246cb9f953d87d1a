"""The policy compiled ahead of time (torch.export + AOTInductor, a real C++ compile) acts as the
eager one: same actions, same episodes, its settings carried in the package, clear errors."""

import json

import numpy as np
import pytest
import torch

from vjepa_world import WorldModel
from vjepa_world.agent import Agent, AgentConfig
from vjepa_world.agent_pixels import AgentPolicy, PolicyDecision
from vjepa_world.cli import main
from vjepa_world.envs import REACHER_REWARD_ID, make_env
from vjepa_world.planning import run_policy_episode
from vjepa_world.policy_export import CompiledPolicy, export_policy


def _frames(seed: int, count: int = 3):
    """Real environment frames (32 x 32) and states: `count` steps of random actions."""
    env = make_env(REACHER_REWARD_ID, image_size=32)
    observation, info = env.reset(seed=seed)
    rng, steps = np.random.default_rng(seed), [(observation, info)]
    for _ in range(count - 1):
        observation, _, _, _, info = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        steps.append((observation, info))
    env.close()
    frames = [torch.as_tensor(np.asarray(o["pixels"] if isinstance(o, dict) else o))[None] for o, _ in steps]
    states = [torch.as_tensor(np.asarray(i["state"]), dtype=torch.float32)[None] for _, i in steps]
    return frames, states


def test_export_policy_and_evaluate_compiled_act_as_the_eager_policy(reward_world_model, tmp_path):
    run = tmp_path / "agent"
    settings = [
        "agent.steps=2",
        "agent.batch_size=8",
        "agent.horizon=3",
        "agent.hidden_dim=32",
    ]
    argv = ["train-agent", "--world-model", str(reward_world_model), "--out", str(run)]
    assert main([*argv, *(arg for s in settings for arg in ("--set", s))]) == 0
    evaluation = tmp_path / "compiled"
    argv = ["evaluate", "--agent", str(run), "--env", REACHER_REWARD_ID, "--episodes", "2", "--steps", "8"]
    assert main([*argv, "--frame-size", "32", "--out", str(evaluation), "--compiled", "--videos", "0"]) == 0
    summary = json.loads((evaluation / "summary.json").read_text())
    assert summary["compiled"] and summary["compile_seconds"] > 0 and summary["seconds_per_action"] > 0

    world_model = WorldModel.from_pretrained(run / "world_model").eval()
    agent = Agent.from_pretrained(run).eval()
    assert (evaluation / "policy.pt2").is_file()
    assert main(["export-policy", "--agent", str(run), "--frame-size", "32"]) == 0
    compiled = CompiledPolicy(run / "policy.pt2")  # export-policy's default place
    assert (compiled.frame_shape, compiled.frame_skip, compiled.observation_frames, compiled.state_dim) == (
        (32, 32, 3), world_model.frame_skip, world_model.observation_frames, agent.state_dim
    )  # fmt: skip
    assert agent.state_dim > 0  # this agent reads the proprioceptive state
    eager = PolicyDecision(world_model, agent)
    frames, states = _frames(seed=3)
    with torch.inference_mode():
        for previous, frame, state in zip(frames, frames[1:], states[1:], strict=False):
            expected = eager(frame, previous, state)  # (1, frame_skip * 2 torques)
            assert expected.shape == (1, 2 * world_model.frame_skip)
            torch.testing.assert_close(compiled(frame, previous, state), expected, atol=1e-5, rtol=1e-5)

    env = make_env(REACHER_REWARD_ID, image_size=32)
    episodes = [
        run_policy_episode(env, AgentPolicy(decide), seed=7, max_steps=8) for decide in (eager, compiled)
    ]
    env.close()
    differing = (episodes[0].frames != episodes[1].frames).any(axis=-1).mean()  # pixels, over all frames
    assert differing < 1e-3  # the same episode (actions 1e-7 apart may move an edge pixel, no more)
    assert len(episodes[0].frames) == len(episodes[1].frames) == 9

    with pytest.raises(ValueError, match=r"frame of shape \(1, 32, 32, 3\), got \(1, 64, 64, 3\)"):
        compiled(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), frames[0], states[0])
    with pytest.raises(ValueError, match="state of shape"):
        compiled(frames[1], frames[0], torch.zeros(1, 2))
    with pytest.raises(FileNotFoundError, match="export_policy"):
        CompiledPolicy(tmp_path / "missing.pt2")


def test_export_policy_compiles_a_frame_only_agent_and_refuses_without_a_compiler(
    reward_world_model, tmp_path, monkeypatch
):
    world_model = WorldModel.from_pretrained(reward_world_model).eval()
    torch.manual_seed(0)
    latent_shape = (16, world_model.latent_dim)  # vit_micro on 32 x 32 frames: 4 x 4 patches
    agent = Agent(latent_shape, world_model.action_dim, config=AgentConfig(hidden_dim=32)).eval()
    assert agent.state_dim == 0
    compiled = export_policy(world_model, agent, tmp_path / "deploy" / "policy.pt2", frame_size=(32, 32))
    frames, _ = _frames(seed=5, count=2)
    nothing = torch.zeros(1, 0)
    with torch.inference_mode():
        expected = PolicyDecision(world_model, agent)(frames[1], frames[0], nothing)
        torch.testing.assert_close(compiled(frames[1], frames[0], nothing), expected, atol=1e-5, rtol=1e-5)
    assert ((expected >= agent.low) & (expected <= agent.high)).all()

    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        export_policy(world_model, agent, tmp_path / "never.pt2", frame_size=(32, 32))
    assert not (tmp_path / "never.pt2").exists()
