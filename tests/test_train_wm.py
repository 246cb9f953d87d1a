"""collect -> train-wm -> WorldModel: the command line, the objective, resume, torchrun, evaluation."""

import json
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

from conftest import torchrun
from vjepa_world import VideoEncoder, WorldModel
from vjepa_world.cli import main
from vjepa_world.config import get_preset
from vjepa_world.data.episodes import LeRobotDataset, SequenceDataset, encode_episodes
from vjepa_world.envs import POINT_MASS_ID, REACHER_ID, PointMassGoalEnv, collect_episodes, make_env
from vjepa_world.horizon_errors import rollout_errors
from vjepa_world.planning import planner_config, run_mpc_episode
from vjepa_world.train.config import LossConfig, WorldModelConfig, build_config
from vjepa_world.train.logs import read_log
from vjepa_world.train.wm_objective import WorldModelObjective
from vjepa_world.train.world_model import _resolved_for_data, train_world_model

TINY = [  # a predictor and schedule that train in seconds, on a given frozen encoder (V-JEPA 2-AC)
    "model.encoder_training=frozen",
    "model.dim=32",
    "model.depth=2",
    "model.num_heads=2",
    "optim.batch_size=4",
    "optim.steps=6",
    "optim.warmup_steps=2",
    "optim.decay_steps=2",
    "run.checkpoint_every=3",
    "run.log_every=1",
    "data.eval_horizon=3",
    "data.frame_skip=1",  # the fixture's 10-step episodes; the default 4 runs in the command-line test
    "distance.steps=20",
    "distance.batch_size=32",
    "uncertainty.steps=5",
    "uncertainty.batch_size=16",
]


def collect_reacher(out, steps: int):
    """`vjepa-world collect`: 5 random-action ReacherGoal episodes of `steps` steps at 32 px."""
    argv = ["collect", "--env", REACHER_ID, "--episodes", "5", "--steps", str(steps), "--size", "32"]
    assert main([*argv, "--policy", "random", "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reacher_data(tmp_path_factory):
    return collect_reacher(tmp_path_factory.mktemp("reacher"), steps=10)


@pytest.fixture(scope="module")
def long_reacher_data(tmp_path_factory):
    """Episodes long enough for the default frame skip 5: (3 observed + 1 + 3 predicted) x 5 rows."""
    return collect_reacher(tmp_path_factory.mktemp("reacher_long"), steps=35)


@pytest.fixture()
def micro_encoder():
    torch.manual_seed(0)
    return VideoEncoder(get_preset("vit_micro").encoder).eval()


def test_collect_writes_a_dataset_that_reads_back_the_episodes(reacher_data):
    summary = json.loads((reacher_data / "summary.json").read_text())
    assert summary["episodes"] == 5 and summary["frames"] == 50
    expected = list(
        collect_episodes(REACHER_ID, 5, 10, policy="random", seed=3, image_size=32, progress=False)
    )
    dataset = LeRobotDataset(reacher_data)
    for index, episode in enumerate(expected):
        read = dataset.read_episode(index)
        np.testing.assert_array_equal(read.actions, episode.actions)
        np.testing.assert_array_equal(read.states, episode.states)
        error = np.abs(read.frames.astype(int) - episode.frames.astype(int))
        assert error.max() <= 3, f"episode {index}: frame error up to {error.max()} of 255 (lossless codec)"


def test_train_wm_without_an_encoder_pretrains_one_and_writes_a_loadable_world_model(
    long_reacher_data, tmp_path
):
    out = tmp_path / "run"
    encoder_settings = ["encoder.preset=vit_micro", "encoder.depth=2", "encoder.dim=64", "encoder.steps=3"]
    encoder_settings.append("encoder.batch_size=4")
    default_data = [value for value in TINY if not value.startswith("data.frame_skip")]
    sets = [arg for value in [*default_data, *encoder_settings] for arg in ("--set", value)]
    assert main(["train-wm", "--data", str(long_reacher_data), "--out", str(out), *sets]) == 0
    for name in (
        "encoder/summary.json",
        "config.json",
        "model.safetensors",
        "log.jsonl",
        "training_curves.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 6
    assert summary["train_episodes"] == 4 and summary["val_episodes"] == 1
    assert set(summary["val"]["l1"]) == {"world model", "copy last", "shuffled actions"}
    assert all(len(v) == 3 for v in summary["val"]["l1"].values())
    world_model = WorldModel.from_pretrained(out)
    # defaults: a model step is 5 env steps (their 2-D torques concatenated) and sees the 6-D state
    assert world_model.encoder.config.dim == 64 and (world_model.action_dim, world_model.state_dim) == (10, 6)
    assert (world_model.frame_skip, world_model.history) == (5, 3)
    frames = torch.from_numpy(LeRobotDataset(long_reacher_data).read_frames(0, [0, 1]))  # (2, 32, 32, 3)
    latents = world_model.encode(frames)  # (2, N, 64): 32 px / patch 16 -> 4 tokens
    assert latents.shape == (2, 4, 64)
    states = world_model.imagined_states(torch.zeros(5, 6), 4)  # (5, 4, 6)
    assert world_model.rollout(latents[:1], torch.zeros(5, 4, 10), states).shape == (5, 4, 4, 64)
    # a second run on the same encoder reuses the cached features: nothing is encoded again
    cached = sorted(p.name for p in (out / "features").rglob("*.safetensors"))
    assert len(cached) == 5
    with pytest.raises(ValueError, match="--resume"):
        config = build_config({}, TINY, kind=WorldModelConfig)
        train_world_model(config, long_reacher_data, out, progress=False)


def test_killed_and_resumed_training_matches_an_uninterrupted_run(reacher_data, tmp_path, micro_encoder):
    config = build_config({}, TINY, kind=WorldModelConfig)
    train_world_model(config, reacher_data, tmp_path / "whole", encoder=micro_encoder, progress=False)
    part = tmp_path / "part"
    first = train_world_model(config, reacher_data, part, encoder=micro_encoder, progress=False, stop_after=3)
    assert not first["finished"] and not (part / "model.safetensors").exists()
    train_world_model(config, reacher_data, part, encoder=micro_encoder, progress=False, resume=True)
    whole, resumed = read_log(tmp_path / "whole"), read_log(part)
    assert [row["step"] for row in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(whole, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    one = WorldModel.from_pretrained(tmp_path / "whole").predictor.state_dict()
    two = WorldModel.from_pretrained(part).predictor.state_dict()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, atol=1e-6, rtol=1e-5)


def test_two_gloo_processes_train_like_one(reacher_data, tmp_path, micro_encoder):
    micro_encoder.save_pretrained(tmp_path / "encoder")
    sets = [arg for value in TINY for arg in ("--set", value)]
    args = [
        "-m",
        "vjepa_world.cli",
        "train-wm",
        "--data",
        str(reacher_data),
        "--encoder",
        str(tmp_path / "encoder"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(prefix: list[str], out: str) -> None:
        done = subprocess.run(
            [*prefix, *args, *sets, "--out", str(tmp_path / out)], env=env, capture_output=True, timeout=300
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]

    run([sys.executable], "one")
    run(torchrun(2), "two")
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [row["step"] for row in two] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two, strict=True):  # the same global batches, split over two processes
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_one_rollout_step_after_the_context_is_the_teacher_forced_prediction(micro_encoder):
    torch.manual_seed(1)
    world_model = WorldModel(micro_encoder, action_dim=3, dim=32, depth=2, num_heads=2)
    latents = torch.nn.functional.layer_norm(torch.randn(2, 4, 4, 64), (64,))  # (B, T, N, D)
    actions = torch.randn(2, 4, 3)
    with torch.no_grad():
        teacher_forced = world_model.predict_next(latents[:, :3], actions[:, :3])  # steps 1..3
        rolled = world_model.rollout_window(latents, actions, None, context=2, horizon=1)  # step 3
        torch.testing.assert_close(rolled[:, 0], teacher_forced[:, 2], atol=1e-5, rtol=0)
    objective = WorldModelObjective(world_model, LossConfig(rollout_steps=1, rollout_context=2))
    loss, metrics = objective(latents, actions, None)
    rollout = (rolled[:, 0] - latents[:, 3]).abs().mean()
    teacher = (teacher_forced - latents[:, 1:]).abs().mean()
    assert float(metrics["loss/rollout"]) == pytest.approx(float(rollout), abs=1e-6)
    assert loss.item() == pytest.approx((rollout + teacher).item(), abs=1e-6)
    copy = (latents[:, 1:] - latents[:, :-1]).abs().mean()
    assert float(metrics["copy_last"]) == pytest.approx(float(copy), abs=1e-6)


def test_rollout_errors_match_a_direct_computation(reacher_data, tmp_path, micro_encoder):
    world_model = WorldModel(micro_encoder, action_dim=2, dim=32, depth=2, num_heads=2).eval()
    cache = encode_episodes(reacher_data, world_model.encode, tmp_path, key="micro", progress=False)
    windows = SequenceDataset(reacher_data, 5, features=cache, episodes=[4])  # context 1 + 1 + horizon 3
    errors = rollout_errors(world_model, windows, 3, context=1, batch_size=5)
    assert errors["windows"] == len(windows) == 6
    latents = torch.stack([windows[i]["features"] for i in range(len(windows))])  # (6, 5, 16, 64)
    actions = torch.stack([windows[i]["actions"] for i in range(len(windows))])
    copy = [(latents[:, 1 + h] - latents[:, 1]).abs().mean().item() for h in (1, 2, 3)]
    with torch.no_grad():  # the same rollout without the KV cache: the whole sequence rerun per step
        predicted = world_model.rollout_uncached(
            latents[:, 1], actions[:, 1:4], history=(latents[:, :1], actions[:, :1])
        )
    model = [(predicted[:, h - 1] - latents[:, 1 + h]).abs().mean().item() for h in (1, 2, 3)]
    assert errors["l1"]["copy last"] == pytest.approx(copy, abs=1e-5)
    assert errors["l1"]["world model"] == pytest.approx(model, abs=1e-5)


def test_bad_training_input_gives_one_line_errors(reacher_data, tmp_path, micro_encoder):
    with pytest.raises(ValueError, match="sequence_length 1 is too short: the rollout loss needs"):
        config = build_config({}, [*TINY, "data.sequence_length=1"], kind=WorldModelConfig)
        train_world_model(config, reacher_data, tmp_path / "a", encoder=micro_encoder, progress=False)
    with pytest.raises(ValueError, match=r"no episode .* has the 30 rows"):
        config = build_config(
            {},
            [*TINY, "data.sequence_length=15", "data.frame_skip=2", "loss.rollout=0"],
            kind=WorldModelConfig,
        )
        train_world_model(config, reacher_data, tmp_path / "b", encoder=micro_encoder, progress=False)
    assert main(["train-wm", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")]) == 2
    world_model = WorldModel(micro_encoder, action_dim=2, dim=32, depth=2, num_heads=2)
    with pytest.raises(ValueError, match=r"actions must be \(B, H, 2\)"):
        world_model.rollout(torch.zeros(1, 16, 64), torch.zeros(3, 4, 5))


class WithoutState(gymnasium.Wrapper):
    """Infos without "state": an environment with no proprioception, as a user's may be."""

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {k: v for k, v in info.items() if k != "state"}

    def step(self, action):
        *outcome, info = self.env.step(action)
        return *outcome, {k: v for k, v in info.items() if k != "state"}


def stateless_point_mass(image_size: int = 64) -> gymnasium.Env:
    return WithoutState(PointMassGoalEnv(image_size=image_size))


def test_an_environment_without_states_collects_trains_and_plans_with_every_default(tmp_path, micro_encoder):
    data, run = tmp_path / "data", tmp_path / "run"
    env = "test_train_wm:stateless_point_mass"
    argv = ["collect", "--env", env, "--episodes", "4", "--steps", "10", "--size", "32", "--out", str(data)]
    assert main(argv) == 0
    assert "observation.state" not in LeRobotDataset(data, state_key=None).features  # no empty column
    config = build_config({}, TINY, kind=WorldModelConfig)  # model.use_states unset: follows the data
    train_world_model(config, data, run, encoder=micro_encoder, progress=False)
    world_model = WorldModel.from_pretrained(run)
    assert world_model.state_dim == 0  # the frame-only model
    result = run_mpc_episode(
        make_env(env, image_size=32),
        world_model,
        planner_config(samples=8, elites=2, iterations=1),
        seed=0,
        max_steps=3,
    )
    assert result.steps == 3
    with pytest.raises(ValueError, match=r"no 'observation.state' feature .* leave it unset"):
        config = build_config({}, [*TINY, "model.use_states=true"], kind=WorldModelConfig)
        train_world_model(config, data, tmp_path / "again", encoder=micro_encoder, progress=False)


def test_training_steps_default_by_encoder_and_states(tmp_path):
    """optim.steps unset: 1,000 with states or a frozen encoder, 4,000 for an encoder trained without
    states (docs/results.md, issue 13); distance.steps unset: chosen from the frames; a given number
    is kept."""
    with_states, frames_only = tmp_path / "states", tmp_path / "frames"
    for env, out in ((POINT_MASS_ID, with_states), ("test_train_wm:stateless_point_mass", frames_only)):
        argv = ["collect", "--env", env, "--episodes", "2", "--steps", "4", "--size", "32", "--out", str(out)]
        assert main(argv) == 0

    def steps(data, *settings):
        config = build_config({}, list(settings), kind=WorldModelConfig)
        return _resolved_for_data(config, data, encoder_given=False).optim.steps

    assert steps(with_states) == 1000 and steps(with_states, "model.encoder_training=finetune") == 1000
    assert steps(frames_only) == 4000 and steps(frames_only, "model.encoder_training=finetune") == 4000
    assert steps(frames_only, "model.encoder_training=frozen") == 1000
    assert steps(frames_only, "optim.steps=7") == 7

    def distance_steps(*settings):
        config = build_config({}, list(settings), kind=WorldModelConfig)
        return _resolved_for_data(config, with_states, encoder_given=False).distance.steps

    assert distance_steps() == 12_000  # 8 frames: the floor
    assert distance_steps("distance.steps=0") == 0 and distance_steps("distance.steps=5") == 5


def test_states_are_known_up_to_the_current_step_and_unknown_when_imagined(micro_encoder):
    torch.manual_seed(2)
    world_model = WorldModel(micro_encoder, action_dim=2, state_dim=3, dim=32, depth=2, num_heads=2).eval()
    latents = torch.nn.functional.layer_norm(torch.randn(2, 5, 4, 64), (64,))
    actions, states = torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    with torch.no_grad():
        base = world_model.rollout_window(latents, actions, states, context=2, horizon=2)
        later = states.clone()
        later[:, 3:] += 5.0  # the states of imagined steps are never used
        torch.testing.assert_close(world_model.rollout_window(latents, actions, later, 2, 2), base)
        current = states.clone()
        current[:, 2] += 5.0  # the current state is
        assert not torch.allclose(world_model.rollout_window(latents, actions, current, 2, 2), base)
    imagined = WorldModel.imagined_states(states[:, 2], 3)
    assert imagined.shape == (2, 3, 3) and torch.equal(imagined[:, 0], states[:, 2])
    assert not imagined[:, 1:].any()
