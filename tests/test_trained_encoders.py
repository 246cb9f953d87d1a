"""train-wm's encoder modes: frozen stays bit-identical, finetune and joint train the encoder end to
end with an anti-collapse term, the saved model carries its settings, and planning checks them."""

import json

import gymnasium
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_train_wm import TINY, collect_reacher
from vjepa_world import VideoEncoder, WorldModel
from vjepa_world.checkpoints import encoder_fingerprint
from vjepa_world.cli import main
from vjepa_world.config import get_preset
from vjepa_world.data.episodes import FeatureCache, LeRobotDataset
from vjepa_world.envs import REACHER_ID, PointMassGoalEnv, make_env
from vjepa_world.nn.decoder import FrameDecoder
from vjepa_world.nn.heads import InverseDynamicsHead
from vjepa_world.planning import planner_config, run_mpc_episode
from vjepa_world.train.config import LossConfig, WorldModelConfig, build_config
from vjepa_world.train.logs import read_log
from vjepa_world.train.wm_objective import WorldModelObjective
from vjepa_world.train.world_model import action_blind_warning, train_world_model

JOINT = [*TINY, "model.encoder_training=joint", "encoder.preset=vit_micro", "model.latent_dim=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return collect_reacher(tmp_path_factory.mktemp("reacher"), steps=10)


def _train(settings, data, out, **kwargs):
    return train_world_model(
        build_config({}, settings, kind=WorldModelConfig), data, out, progress=False, **kwargs
    )


def test_joint_training_trains_end_to_end_and_the_saved_model_reloads_with_identical_rollouts(data, tmp_path):
    summary = _train(JOINT, data, tmp_path / "joint")
    assert summary["finished"] and summary["encoder_training"] == "joint" and summary["latent"] == "vector"
    rows = read_log(tmp_path / "joint")
    for key in ("loss/sigreg", "loss/state_decoding", "latent_rank", "latent_std/mean", "latent_std/min"):
        assert all(np.isfinite(row[key]) for row in rows), key
    assert rows[0]["latent_rank"] > 1.0
    settings = json.loads((tmp_path / "joint" / "world_model.json").read_text())
    assert (
        settings["encoder_training"] == "joint" and settings["frame_skip"] == 1 and settings["history"] == 3
    )
    assert settings["observation_frames"] == 2  # trained encoders see motion by default
    loaded = WorldModel.from_pretrained(tmp_path / "joint").eval()
    assert loaded.latent == "vector" and loaded.state_head is not None
    frames = torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8)
    latents = loaded.encode(frames)
    assert latents.shape == (2, 1, 8)
    actions, states = torch.rand(3, 4, 2) * 2 - 1, torch.zeros(3, 4, 6)
    again = WorldModel.from_pretrained(tmp_path / "joint").eval()
    torch.testing.assert_close(
        loaded.rollout(latents[:1], actions, states),
        again.rollout(latents[:1], actions, states),
        atol=0,
        rtol=0,
    )
    assert loaded.decode_state(latents).shape == (2, 6)
    # the held-out evaluation and the distance head read latents with motion (frame and predecessor)
    run, dataset = tmp_path / "joint", LeRobotDataset(data, state_key=None)
    cached = FeatureCache(run / "features", encoder_fingerprint(loaded.encoder, loaded.projector) + "-pairs")
    pair = torch.from_numpy(dataset.read_frames(0, [2, 3]))  # rows 2 and 3 of episode 0
    torch.testing.assert_close(cached.read(0, slice(3, 4)), loaded.encode(pair[1:], pair[:1]))
    distances = loaded.distance_head.distance(latents[:, None], latents[None])  # (2, 2) learned steps apart
    torch.testing.assert_close(distances, again.distance_head.distance(latents[:, None], latents[None]))
    assert distances.shape == (2, 2) and distances.diagonal().abs().max() < 1e-4


def test_the_inverse_dynamics_head_and_frame_decoder_train_with_the_encoder_and_reload(data, tmp_path):
    settings = [*JOINT, "loss.inverse_dynamics=1", "loss.frame_decoding=1"]
    _train(settings, data, tmp_path / "run")
    rows = read_log(tmp_path / "run")
    assert all(
        np.isfinite(row["loss/inverse_dynamics"]) and np.isfinite(row["loss/frame_decoding"]) for row in rows
    )
    loaded = WorldModel.from_pretrained(tmp_path / "run").eval()
    frames = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    latents = loaded.encode(frames)  # (3, 1, 8)
    assert loaded.inverse_head(latents[:2], latents[1:]).shape == (2, loaded.action_dim)
    assert loaded.frame_decoder(latents).shape == (3, 3, 32, 32)
    again = WorldModel.from_pretrained(tmp_path / "run").eval()
    torch.testing.assert_close(again.frame_decoder(latents), loaded.frame_decoder(latents), atol=0, rtol=0)
    # the decoder's term: the encoded latents' pictures and the teacher-forced predictions' pictures
    # of the frames they predict, so the predictor is trained to carry what the frame shows
    only = {"teacher_forcing": 0, "rollout": 0, "state_decoding": 0, "reward": 0, "continuation": 0}
    objective = WorldModelObjective(loaded, LossConfig(**only, frame_decoding=1, regularizer_weight=0))
    frames = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)
    actions, states = torch.rand(2, 4, loaded.action_dim) * 2 - 1, torch.randn(2, 4, 6)
    loss, _ = objective(frames, actions, states, previous=frames)
    loss.backward()
    with torch.no_grad():
        encoded = loaded.embed(frames, frames)  # (2, 4, 1, 8)
        predicted = loaded.predict_next(encoded[:, :-1], actions[:, :-1], states[:, :-1])
        pictures = F.interpolate(loaded._images(frames), size=(32, 32), mode="area").unflatten(0, (2, 4))
        seen = (loaded.frame_decoder(encoded) - pictures).square().mean()
        foreseen = (loaded.frame_decoder(predicted) - pictures[:, 1:]).square().mean()
    assert loss.item() == pytest.approx(((seen + foreseen) / 2).item(), rel=1e-5)
    trained = [p for p in loaded.predictor.parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_the_inverse_dynamics_head_recovers_the_action_of_a_linear_step():
    # next = latent + W action: the action is (W^+)(next - latent), which the head must learn
    torch.manual_seed(0)
    head = InverseDynamicsHead(latent_dim=6, action_dim=2, hidden_dim=64)
    mixing = torch.randn(2, 6)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(400):
        latents, actions = torch.randn(256, 1, 6), torch.rand(256, 2) * 2 - 1
        error = (head(latents, latents + (actions @ mixing)[:, None]) - actions).square().mean()
        optimizer.zero_grad()
        error.backward()
        optimizer.step()
    assert error < 0.02 * (1 / 3)  # 2% of the actions' variance (uniform on [-1, 1]: 1/3)


def test_the_frame_decoder_refuses_a_size_it_cannot_reach():
    assert FrameDecoder(image_size=16)(torch.zeros(2, 1, 64)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="4 times a power of 2"):
        FrameDecoder(image_size=24)


def test_joint_training_resumes_exactly(data, tmp_path):
    _train(JOINT, data, tmp_path / "whole")
    _train(JOINT, data, tmp_path / "part", stop_after=3)
    _train(JOINT, data, tmp_path / "part", resume=True)
    for a, b in zip(read_log(tmp_path / "whole"), read_log(tmp_path / "part"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


def test_frozen_encoder_is_bit_identical_after_training_and_finetune_changes_it(data, tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder).eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    _train(TINY, data, tmp_path / "frozen", encoder=encoder)
    frozen = WorldModel.from_pretrained(tmp_path / "frozen")
    for key, value in before.items():
        assert torch.equal(frozen.encoder.state_dict()[key], value), key
        assert torch.equal(encoder.state_dict()[key], value), key
    assert frozen.latent == "tokens" and frozen.encoder_training == "frozen"
    assert frozen.observation_frames == 1  # V-JEPA 2-AC: the frame repeated to a tubelet
    _train([*TINY, "model.encoder_training=finetune"], data, tmp_path / "finetune", encoder=encoder)
    tuned = WorldModel.from_pretrained(tmp_path / "finetune")
    changed = [k for k, v in before.items() if not torch.equal(tuned.encoder.state_dict()[k], v)]
    assert tuned.encoder_training == "finetune" and len(changed) > len(before) // 2


def test_freeze_latents_continues_a_joint_run_with_its_encoder_and_projector_unchanged(data, tmp_path):
    run = tmp_path / "run"
    _train(JOINT, data, run)
    before = WorldModel.from_pretrained(run)
    _train([*JOINT, "optim.steps=9", "model.freeze_latents=true"], data, run, resume=True)
    after = WorldModel.from_pretrained(run)
    for part in ("encoder", "projector"):
        old, new = getattr(before, part).state_dict(), getattr(after, part).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), part
    old, new = before.predictor.state_dict(), after.predictor.state_dict()
    assert sum(not torch.equal(old[k], new[k]) for k in old) > len(old) // 2  # the predictor trained on
    assert read_log(run)[-1]["step"] == 9


@pytest.mark.parametrize(
    "settings, message",
    [
        (["loss.regularizer_weight=0.5"], "regularizer_weight acts on trained encoders"),
        (["loss.inverse_dynamics=1"], "inverse_dynamics acts on trained encoders"),
        (["loss.frame_decoding=1"], "frame_decoding acts on trained encoders"),
        (["model.encoder_training=joint", "encoder.steps=50"], "joint training skips"),
        (["model.encoder_training=pretrained"], "encoder_training must be one of"),
        (["loss.distance=huber"], "loss.distance"),
        (["model.observation_frames=3"], "observation_frames must be 1 or 2"),
        (["model.encoder_training=joint", "loss.regularizer=barlow"], "loss.regularizer"),
        (["model.freeze_latents=true"], "freeze_latents acts on trained encoders"),
        (
            ["model.encoder_training=joint", "model.freeze_latents=true", "loss.regularizer_weight=0.5"],
            "model.freeze_latents keeps fixed",
        ),
    ],
)
def test_settings_that_would_not_act_are_refused(data, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        _train([*TINY, *settings], data, tmp_path / "run")


def test_planning_uses_the_saved_frame_skip_and_refuses_a_mismatch(tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    env = make_env(REACHER_ID, image_size=32)
    config = planner_config("default", samples=8, elites=2, iterations=1)
    model = WorldModel(encoder, action_dim=6, frame_skip=3, history=2, dim=32, depth=2, num_heads=2).eval()
    result = run_mpc_episode(env, model, config, seed=0, max_steps=7)
    assert result.steps == 7 and len(result.distances) == 8  # 3 model steps of 3, cut at 7; reset included
    with pytest.raises(ValueError, match="frame skip 2"):
        mismatched = WorldModel(encoder, action_dim=6, frame_skip=2, dim=32, depth=2, num_heads=2).eval()
        run_mpc_episode(env, mismatched, config, seed=0, max_steps=4)
    held = run_mpc_episode(
        env,
        model,
        planner_config("default", samples=8, elites=2, iterations=1, hold_actions=True),
        seed=0,
        max_steps=6,
    )
    assert held.steps == 6  # one torque per model step, held for its 3 env steps
    with pytest.raises(ValueError, match="objective=state needs a world model with a state head"):
        run_mpc_episode(env, model, planner_config("default", objective="state"), seed=0, max_steps=4)
    with pytest.raises(ValueError, match="history 3 is longer"):
        run_mpc_episode(env, model, planner_config("default", history=3), seed=0, max_steps=4)
    env.close()


def test_a_model_blind_to_its_actions_is_flagged():
    blind = {"l1": {"world model": [0.10, 0.20], "shuffled actions": [0.101, 0.203]}}
    seeing = {"l1": {"world model": [0.10, 0.20], "shuffled actions": [0.12, 0.26]}}
    warning = action_blind_warning(blind)
    assert warning and "1.5%" in warning and "frame_skip" in warning
    assert action_blind_warning(seeing) is None


class Cropped(gymnasium.ObservationWrapper):
    """PointMassGoal's frames cut to 32 x 24 (and its goal image): a camera that is not square."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gymnasium.spaces.Box(0, 255, (32, 24, 3), np.uint8)

    def observation(self, frame):
        return frame[:, 4:-4]

    def reset(self, **kwargs):
        frame, info = super().reset(**kwargs)
        return frame, {**info, "goal_image": self.observation(info["goal_image"])}


def cropped_point_mass(image_size: int = 32) -> gymnasium.Env:
    return Cropped(PointMassGoalEnv(image_size=32))


def test_frames_of_any_size_train_jointly_and_plan(tmp_path):
    """Non-square frames whose sides are not multiples of the patch: the encoder takes them resized
    to a square of whole patches."""
    env = "test_trained_encoders:cropped_point_mass"
    argv = ["collect", "--env", env, "--episodes", "4", "--steps", "10", "--out", str(tmp_path / "data")]
    assert main(argv) == 0
    _train(JOINT, tmp_path / "data", tmp_path / "run")
    world_model = WorldModel.from_pretrained(tmp_path / "run").eval()
    assert world_model.encoder.config.image_size == 32  # 24 px rounded to whole 16 px patches
    planner = planner_config(samples=8, elites=2, iterations=1)
    result = run_mpc_episode(make_env(env), world_model, planner, seed=0, max_steps=3)
    assert result.steps == 3 and result.frames.shape[1:] == (32, 24, 3)


def test_regulariser_weight_defaults_by_encoder_and_states():
    """SIGReg's default weight: none for a frozen encoder, 0.1 for a trained one whose latent the
    state head anchors, 3 for a frame-only one (docs/results.md, issue 13); a given weight is kept."""

    def weight(training: str, state_dim: int, **loss) -> float:
        encoder = VideoEncoder(get_preset("vit_micro").encoder)
        model = WorldModel(
            encoder, encoder_training=training, action_dim=2, state_dim=state_dim, dim=32, depth=1
        )
        return WorldModelObjective(model, LossConfig(**loss)).loss.regularizer_weight

    assert weight("frozen", 0) == 0.0 and weight("frozen", 4) == 0.0
    assert weight("joint", 4) == 0.1 and weight("finetune", 4) == 0.1
    assert weight("joint", 0) == 3.0 and weight("joint", 0, regularizer_weight=0.5) == 0.5
