"""collect -> train-wm (with reward heads) -> train-agent -> evaluate, end to end in a smoke configuration."""

import json
import math

import pytest
import torch

from conftest import REWARD_WM
from vjepa_world import VideoEncoder, WorldModel, get_preset
from vjepa_world.agent import Agent, AgentConfig
from vjepa_world.agent_pixels import dataset_start_states
from vjepa_world.cli import main
from vjepa_world.data.episodes import LeRobotDataset, SequenceDataset
from vjepa_world.envs import REACHER_REWARD_ID
from vjepa_world.eval.uncertainty import fitted_noise, future_likelihood
from vjepa_world.train.agent import train_agent
from vjepa_world.train.config import TrainAgentConfig, WorldModelConfig, build_config
from vjepa_world.train.world_model import encode_dataset, train_world_model

AGENT = [
    "--set", "agent.steps=4", "--set", "agent.batch_size=8", "--set", "agent.horizon=3",
    "--set", "agent.hidden_dim=32", "--set", "run.eval_episodes=2", "--set", "run.checkpoint_every=2",
]  # fmt: skip


def test_train_wm_adds_reward_and_continuation_heads_that_reload(reward_world_model):
    world_model = WorldModel.from_pretrained(reward_world_model)
    assert world_model.reward_head is not None and world_model.continue_head is not None
    logged = [json.loads(line) for line in (reward_world_model / "log.jsonl").read_text().splitlines()]
    assert {"loss/reward", "loss/continuation"} <= set(logged[-1])
    z = torch.randn(3, 2, 16, 64)
    assert world_model.predict_reward(z).shape == (3, 2)
    continues = world_model.predict_continue(z)
    assert continues.shape == (3, 2) and ((continues > 0) & (continues < 1)).all()
    summary = json.loads((reward_world_model / "summary.json").read_text())
    assert LeRobotDataset(summary["data"]).episode_indices == [0, 1, 2, 3]  # what train-agent replays


def test_train_agent_and_evaluate_run_end_to_end(reward_world_model, tmp_path):
    out = tmp_path / "agent"
    argv = ["train-agent", "--world-model", str(reward_world_model), "--env", REACHER_REWARD_ID]
    assert main([*argv, "--out", str(out), *AGENT]) == 0
    for name in (
        "agent.json",
        "agent.safetensors",
        "checkpoint.pt",
        "log.jsonl",
        "world_model/world_model.json",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 4
    assert summary["eval"]["episodes"] == 2 and 0 <= summary["eval"]["success_rate"] <= 1
    assert (out / "eval" / "episode_000.mp4").is_file()
    agent = Agent.from_pretrained(out)
    assert agent.action_dim == 4 and agent.latent_shape == (16, 64)  # frame skip 2 x 2 torques
    evaluation = tmp_path / "evaluation"
    argv = ["evaluate", "--agent", str(out), "--env", REACHER_REWARD_ID, "--episodes", "2", "--steps", "6"]
    assert main([*argv, "--size", "32", "--out", str(evaluation)]) == 0
    result = json.loads((evaluation / "summary.json").read_text())
    assert result["episodes"] == 2 and result["max_steps"] == 6 and result["seconds_per_action"] > 0
    assert {"return", "random_return", "success_rate", "random_success_rate"} <= set(result)
    assert main([*argv, "--size", "32", "--out", str(evaluation), "--episodes", "0"]) == 2
    assert main(["train-agent", "--world-model", str(reward_world_model), "--out", str(out)]) == 2  # exists


@pytest.mark.parametrize("imitation", [[], ["agent.imitation=1", "agent.imitation_starts=8"]])
def test_a_killed_agent_run_resumes_to_the_same_agent(reward_world_model, tmp_path, imitation):
    """Also when the actor imitates the planner: the resumed run plans the same targets again."""
    settings = [a for a in AGENT if a not in ("--set", "run.eval_episodes=2")]  # no --env: no evaluation
    config = build_config({}, settings + imitation, kind=TrainAgentConfig)
    whole = train_agent(config, reward_world_model, tmp_path / "whole", progress=False)
    partial = train_agent(config, reward_world_model, tmp_path / "resumed", progress=False, stop_after=2)
    assert not partial["finished"]
    resumed = train_agent(config, reward_world_model, tmp_path / "resumed", resume=True, progress=False)
    assert whole["final"] == resumed["final"]
    assert ("imitation" in whole["final"]) == bool(imitation)
    a, b = Agent.from_pretrained(tmp_path / "whole"), Agent.from_pretrained(tmp_path / "resumed")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)


def test_the_online_loop_collects_retrains_and_resumes(reward_world_model, tmp_path):
    out = tmp_path / "online"
    online = [
        "--online", "--set", "online.iterations=1", "--set", "online.episodes=2",
        "--set", "online.world_model_steps=2", "--set", "online.agent_steps=2",
    ]  # fmt: skip
    argv = [
        "train-agent",
        "--world-model",
        str(reward_world_model),
        "--env",
        REACHER_REWARD_ID,
        *AGENT,
        *online,
    ]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6  # 4 offline + 2 online updates
    (row,) = summary["online_iterations"]
    assert row["episodes"] == 6  # the 4 the world model saw and 2 collected by the policy
    grown = LeRobotDataset(out / "data_001")
    assert grown.episode_indices == [0, 1, 2, 3, 4, 5]
    wm_summary = json.loads((out / "world_model_run" / "summary.json").read_text())
    assert wm_summary["steps"] == 6  # the original 4 steps, continued by 2
    # done: resuming changes nothing and collects nothing more
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["online_iterations"] == summary["online_iterations"]
    assert len(LeRobotDataset(out / "data_001")) == 6
    # killed after collecting: the resumed loop skips the collection, finds the later stages' checkpoints
    state = json.loads((out / "online.json").read_text())
    (out / "online.json").write_text(json.dumps({"data": state["data"], "collected": 1, "iterations": []}))
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert len(LeRobotDataset(out / "data_001")) == 6 and not (out / "data_002").exists()
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["steps"] == 6 and resumed["online_iterations"][0]["episodes"] == 6


def test_the_online_loop_continues_a_world_model_that_fitted_a_distance_head(reward_world_model, tmp_path):
    """The world model's continued training drops its distance head's settings (the reward task needs
    none) instead of refusing them as inert."""
    data = json.loads((reward_world_model / "summary.json").read_text())["data"]
    settings = [s for s in REWARD_WM if not s.startswith("distance.")] + [
        "distance.steps=2",
        "distance.batch_size=8",
    ]
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder).eval()
    wm = tmp_path / "wm"
    train_world_model(
        build_config({}, settings, kind=WorldModelConfig), data, wm, encoder=encoder, progress=False
    )
    assert WorldModel.from_pretrained(wm).distance_head is not None
    online = ["--online", "--set", "online.iterations=1", "--set", "online.episodes=1"]
    online += ["--set", "online.world_model_steps=1", "--set", "online.agent_steps=1"]
    argv = ["train-agent", "--world-model", str(wm), "--env", REACHER_REWARD_ID, *AGENT, *online]
    assert main([*argv, "--out", str(tmp_path / "agent")]) == 0
    summary = json.loads((tmp_path / "agent" / "summary.json").read_text())
    assert summary["steps"] == 5 and len(summary["online_iterations"]) == 1


def test_online_freeze_latents_keeps_a_joint_encoder_and_projector(reward_world_model, tmp_path):
    """online.freeze_latents: the continued world model's latents (encoder, projector) stay the
    offline agent's, its predictor and reward head train on."""
    data = json.loads((reward_world_model / "summary.json").read_text())["data"]
    joint = [s for s in REWARD_WM if s != "model.encoder_training=frozen"]
    joint += ["model.encoder_training=joint", "encoder.preset=vit_micro", "model.latent_dim=8"]
    wm = tmp_path / "wm"
    train_world_model(build_config({}, joint, kind=WorldModelConfig), data, wm, progress=False)
    online = ["--online", "--set", "online.iterations=1", "--set", "online.episodes=1"]
    online += ["--set", "online.world_model_steps=2", "--set", "online.agent_steps=1"]
    online += ["--set", "online.freeze_latents=true"]
    argv = ["train-agent", "--world-model", str(wm), "--env", REACHER_REWARD_ID, *AGENT, *online]
    assert main([*argv, "--out", str(tmp_path / "agent")]) == 0
    before = WorldModel.from_pretrained(wm)
    after = WorldModel.from_pretrained(tmp_path / "agent" / "world_model")
    for part in ("encoder", "projector", "predictor", "reward_head"):
        old, new = getattr(before, part).state_dict(), getattr(after, part).state_dict()
        kept = all(torch.equal(old[k], new[k]) for k in old)
        assert kept == (part in ("encoder", "projector")), part


def test_start_states_carry_their_history_and_imagination_continues_it(reward_world_model):
    """A start replays the model steps observed before it; imagining from it is the world model's
    rollout after that history, on the actions the actor took."""
    world_model = WorldModel.from_pretrained(reward_world_model).eval()
    data = json.loads((reward_world_model / "summary.json").read_text())["data"]
    k, dataset = world_model.frame_skip, LeRobotDataset(data, state_key=None)
    starts = dataset_start_states(world_model, data, history=2)
    first = dataset.episode_indices[0]
    assert len(starts) == sum(dataset.length(e) - 2 * k for e in dataset.episode_indices)
    assert starts.rows[0].tolist() == [0, k, 2 * k]  # episode 0's frames 0 and k, then its frame 2k
    taken = torch.from_numpy(dataset.read_rows(first)["actions"][k : 2 * k]).flatten()
    torch.testing.assert_close(starts.actions[k], taken)  # the model action from frame k: rows k..2k-1
    agent = Agent(tuple(starts.latents.shape[-2:]), world_model.action_dim, config=AgentConfig(horizon=3))
    picked = torch.tensor([0, 7])
    latents, states, history = starts.batch(world_model, picked)
    assert history.steps == 2
    imagined, actions = agent.imagine(
        world_model, latents, states, torch.Generator().manual_seed(0), history=history
    )
    _, _, history = starts.batch(world_model, picked)  # imagining extended the cache it was given
    rolled = world_model.rollout(
        latents, agent.to_model_actions(actions), world_model.imagined_states(states, 3), history=history
    )
    torch.testing.assert_close(imagined[:, 1:], rolled, atol=1e-5, rtol=1e-5)
    alone, _ = agent.imagine(world_model, latents, states, torch.Generator().manual_seed(0))
    assert (alone[:, 1:] - imagined[:, 1:]).abs().max() > 1e-3  # the history changes the predictions


def test_an_agent_reads_the_observed_state_then_the_state_heads_reading(reward_world_model, tmp_path):
    """With a state head, the actor and critic also see the standardised state: observed at a
    rollout's start (and when acting), read from the imagined latents by the state head after it."""
    world_model = WorldModel.from_pretrained(reward_world_model).eval()
    data = json.loads((reward_world_model / "summary.json").read_text())["data"]
    starts = dataset_start_states(world_model, data)
    shape, head = tuple(starts.latents.shape[-2:]), world_model.state_head
    agent = Agent.for_world_model(world_model, shape, config=AgentConfig(horizon=3))
    assert agent.state_dim == head.config.state_dim == starts.states.shape[-1] > 0
    latents, states, _ = starts.batch(world_model, torch.tensor([0, 5]))
    imagined, _ = agent.imagine(world_model, latents, states, torch.Generator().manual_seed(0))
    features = agent.rollout_features(world_model, imagined, states)  # (2, 4, N * D + S)
    flat = shape[0] * shape[1]
    assert features.shape == (2, 4, flat + agent.state_dim)
    torch.testing.assert_close(features[:, 0, flat:], (states - head.mean) / head.std)
    torch.testing.assert_close(features[:, 1:, flat:], world_model.decode_state(imagined[:, 1:]))
    with pytest.raises(ValueError, match="reads the proprioceptive state"):
        agent.act(latents)
    agent.save_pretrained(tmp_path)
    loaded = Agent.from_pretrained(tmp_path)
    readings = world_model.read_state(latents, states)
    assert loaded.state_dim == agent.state_dim
    torch.testing.assert_close(loaded.act(latents, readings), agent.act(latents, readings))


def test_held_out_likelihood_of_the_deterministic_model_is_the_gaussian_closed_form(reward_world_model):
    """Scored on the windows its noise was fitted on, the deterministic model's NLL per dimension is
    1/2 + log(2 pi)/2 + the mean log sigma (E[(r / sigma)^2] = 1 by construction)."""
    world_model = WorldModel.from_pretrained(reward_world_model).eval()
    assert world_model.stochastic is not None and world_model.ensemble is not None  # train-wm fitted them
    summary = json.loads((reward_world_model / "summary.json").read_text())
    cache = encode_dataset(world_model, summary["data"], reward_world_model / "features", progress=False)
    windows = SequenceDataset(summary["data"], 3, frame_skip=2, features=cache)
    settings = dict(context=1, horizon=1, samples=4, use_states=True)
    result = future_likelihood(world_model, windows, windows, **settings)
    assert set(result["nll"]) == {"deterministic", "stochastic", "ensemble"}
    sigma = fitted_noise(world_model, windows, "deterministic", **settings)
    expected = 0.5 + 0.5 * math.log(2 * math.pi) + float(sigma.log().mean())
    assert result["nll"]["deterministic"][0] == pytest.approx(expected, rel=1e-4)
    assert all(0 <= c[0] <= 1 for c in result["coverage90"].values())
    assert all(math.isfinite(n[0]) for n in result["nll"].values())
    # every kind's noise is fitted per horizon: the head's own one-step decoder sigma plays no part
    with torch.no_grad():
        world_model.stochastic.log_std.add_(2.0)
    again = future_likelihood(world_model, windows, windows, **settings)
    assert again["nll"]["stochastic"] == pytest.approx(result["nll"]["stochastic"], rel=1e-6)
