"""Every key of every config section acts in the commands that accept it, or is refused.

"Acts" is measured, not declared: the sections of a real (tiny) run are instrumented so that every
read of a key by the package's code is recorded, leaving out the reads of the checks themselves
and of dataclass machinery (copies, dicts for the checkpoint). A key the run never reads must be
refused by the command's checks when set. The runs: `pretrain`, `train-wm` in its three encoder
modes (joint; finetune, pretraining its encoder; frozen, given one), `train-agent` offline and
`--online`, and the planner of `plan` and `demo` with CEM and with MPPI.
"""

import dataclasses
import sys

import pytest
import torch

from conftest import moving_square_frames
from test_train_agent import AGENT
from test_train_wm import TINY, collect_reacher
from vjepa_world import VideoEncoder, WorldModel
from vjepa_world.cli import main
from vjepa_world.config import PlannerConfig, get_preset, planner_config
from vjepa_world.data.video import write_video
from vjepa_world.envs import REACHER_ID, REACHER_REWARD_ID, make_env
from vjepa_world.eval.agent import evaluate_agent
from vjepa_world.planning import run_mpc_episode
from vjepa_world.train.agent import train_agent
from vjepa_world.train.config import (
    PretrainConfig,
    TrainAgentConfig,
    WorldModelConfig,
    agent_inert_keys,
    build_config,
    refuse_inert_keys,
)
from vjepa_world.train.pretrain import pretrain
from vjepa_world.train.world_model import check_config, train_world_model

CHECKS = {"refuse_inert_keys", "inert_keys", "_schedule_inert", "check_config", "planner_inert_keys"}
SAMPLES = {  # a valid value other than the default, where adding to the default will not do
    "loss.regularizer": "vicreg",
    "loss.distance": "l1",
    "model.encoder_training": "finetune",
    "model.use_states": True,
    "model.attention": "factorized",
    "model.loss": "l2",
    "model.sigreg_samples": "clips",
    "model.masks": [{"type": "multiblock"}],
    "model.preset": "vit_micro",
    "encoder.preset": "vit_micro",
    "data.fps": 4.0,
    "run.device": "cpu:0",
    "run.precision": "bfloat16",
    "planner.method": "mppi",
    "planner.objective": "state",
    "planner.energy": "l1",
    "planner.reduce": "final",
}


def changed(key: str, value):
    """A value for `key` other than `value`."""
    if key in SAMPLES and SAMPLES[key] != value:
        return SAMPLES[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, tuple):
        return tuple(v * 0.5 for v in value)
    return 1 if value is None else value + "x"


def _from_a_check() -> bool:
    """Whether the current attribute read comes from a check or from dataclass machinery."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name in CHECKS or code.co_filename in (dataclasses.__file__, "<string>"):
            return True
        frame = frame.f_back
    return False


def watch(section, prefix: str, reads: set[str]):
    """Record in `reads` every "prefix.key" read of `section` (a config dataclass), in place."""
    names = {f.name for f in dataclasses.fields(section)}

    def __getattribute__(self, name):
        if name in names and not _from_a_check():
            reads.add(f"{prefix}.{name}")
        return object.__getattribute__(self, name)

    base = type(section)
    section.__class__ = type(base.__name__, (base,), {"__getattribute__": __getattribute__})
    return section


def watch_config(config, reads: set[str]):
    for field in dataclasses.fields(config):
        watch(getattr(config, field.name), field.name, reads)
    return config


def all_keys(config) -> list[str]:
    return [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(config)
        for f in dataclasses.fields(getattr(config, s.name))
    ]


def with_key(config, key: str, value):
    section, name = key.split(".")
    return dataclasses.replace(
        config, **{section: dataclasses.replace(getattr(config, section), **{name: value})}
    )


def refused(check, config, key: str) -> bool:
    """Whether the command's checks refuse `key` set to another value, naming it."""
    section, name = key.split(".")
    try:
        check(with_key(config, key, changed(key, getattr(getattr(config, section), name))))
    except ValueError as err:
        return str(err).startswith(f"{key} ")
    return False


def unaccounted(config, reads: set[str], check) -> list[str]:
    return [key for key in all_keys(config) if key not in reads and not refused(check, config, key)]


def test_the_instrument_sees_reads_and_not_copies():
    reads: set[str] = set()
    config = watch_config(build_config({}, ["optim.steps=3"]), reads)
    dataclasses.asdict(config)
    dataclasses.replace(config.optim, lr=1.0)
    refuse_inert_keys(config)
    assert reads == set()
    assert config.optim.steps == 3 and reads == {"optim.steps"}
    assert "optim.grad_accum" not in reads and refused(refuse_inert_keys, config, "optim.final_lr")


@pytest.fixture(scope="module")
def reacher(tmp_path_factory):
    return collect_reacher(tmp_path_factory.mktemp("reacher"), steps=10)


def test_every_pretraining_key_acts_or_is_refused(tmp_path):
    for i in range(2):
        frames = moving_square_frames(frames=16, height=40, width=40, seed=i)
        write_video(tmp_path / "clips" / f"{i}.mp4", frames, fps=8)
    settings = {
        "model": {"preset": "vit_micro", "num_frames": 4, "image_size": 32, "temporal_mask_ratio": 0.5},
        "data": {"frame_step": 2, "num_workers": 0},
        "optim": {"batch_size": 2, "steps": 2, "warmup_steps": 1, "decay_steps": 1},
        "run": {"checkpoint_every": 1},
    }
    reads: set[str] = set()
    config = watch_config(build_config(settings), reads)
    assert pretrain(config, tmp_path / "clips", tmp_path / "run", progress=False)["finished"]
    assert unaccounted(config, reads, refuse_inert_keys) == []


WM_TINY = [s for s in TINY if not s.startswith("model.encoder_training")]
WM_TINY += ["optim.steps=2", "optim.warmup_steps=1", "optim.decay_steps=1", "run.checkpoint_every=1"]
WM_TINY += ["distance.steps=2", "distance.batch_size=8"]
TRAINED = ["encoder.preset=vit_micro", "encoder.depth=2", "encoder.dim=64", "model.latent_dim=8"]


@pytest.mark.parametrize(
    "mode, settings, given",
    [
        ("joint", TRAINED, False),
        ("finetune", [*TRAINED, "encoder.steps=2", "encoder.batch_size=2"], False),
        ("frozen", [], True),
    ],
)
def test_every_train_wm_key_acts_or_is_refused(reacher, tmp_path, mode, settings, given):
    reads: set[str] = set()
    values = [*WM_TINY, *settings, f"model.encoder_training={mode}"]
    config = watch_config(build_config({}, values, kind=WorldModelConfig), reads)
    encoder = VideoEncoder(get_preset("vit_micro").encoder) if given else None
    summary = train_world_model(config, reacher, tmp_path / "run", encoder=encoder, progress=False)
    assert summary["finished"] and "val" in summary
    check = lambda c: check_config(c, encoder_given=given)
    assert unaccounted(config, reads, check) == []
    if given:  # every encoder.* key is then refused, none silently dropped
        assert all(refused(check, config, key) for key in all_keys(config) if key.startswith("encoder."))


ONLINE = ["online.iterations=1", "online.episodes=2", "online.world_model_steps=2", "online.agent_steps=2"]


@pytest.mark.parametrize("online", [False, True])
def test_every_train_agent_key_acts_or_is_refused(reward_world_model, tmp_path, online):
    reads: set[str] = set()
    values = [a for a in AGENT if a != "--set"] + (ONLINE if online else [])
    config = watch_config(build_config({}, values, kind=TrainAgentConfig), reads)
    summary = train_agent(
        config,
        reward_world_model,
        tmp_path / "run",
        env=REACHER_REWARD_ID,
        online=online,
        evaluate=evaluate_agent,
        progress=False,
    )
    assert summary["finished"] and len(summary["online_iterations"]) == (1 if online else 0)
    check = lambda c: refuse_inert_keys(c, agent_inert_keys(online=online, env_given=True))
    assert unaccounted(config, reads, check) == []


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_every_planner_key_acts_or_is_refused(method):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    world_model = WorldModel(encoder, action_dim=2, state_dim=6, dim=32, depth=1, num_heads=2).eval()
    changes = dict(method=method, horizon=2, samples=6, iterations=2, execute=1, history=1, seed=1)
    changes |= {"elites": 2} if method == "cem" else {"temperature": 0.3}
    reads: set[str] = set()
    config = watch(planner_config("default", **changes), "planner", reads)
    env = make_env(REACHER_ID, image_size=32)
    try:
        run_mpc_episode(env, world_model, config, seed=0, max_steps=3)
    finally:
        env.close()

    def check(candidate):  # what plan and demo call: every setting as an override of the preset
        section = candidate.planner
        planner_config("default", **{f.name: getattr(section, f.name) for f in dataclasses.fields(section)})

    command = dataclasses.make_dataclass("PlanCommand", [("planner", PlannerConfig)])(config)
    assert unaccounted(command, reads, check) == []


@pytest.mark.parametrize(
    "kind, settings, key",
    [
        (PretrainConfig, ["model.seed=3"], "model.seed"),
        (
            PretrainConfig,
            ["model.masks=[{type: future}]", "model.temporal_mask_ratio=0.5"],
            "model.temporal_mask_ratio",
        ),
        (PretrainConfig, ["model.mask_ratio=0.5"], "model.mask_ratio"),  # no future mask to size
        (PretrainConfig, ["data.fps=4", "data.frame_step=2"], "data.frame_step"),
        (PretrainConfig, ["optim.final_lr=0.1"], "optim.final_lr"),  # decay_steps 0
        (PretrainConfig, ["optim.warmup_steps=0", "optim.start_lr=0.1"], "optim.start_lr"),
        (PretrainConfig, ["model.target=online", "optim.ema=[0.9, 0.9]"], "optim.ema"),  # no EMA target
        (PretrainConfig, ["model.target=frozen", "optim.ema=[0.9, 0.9]"], "optim.ema"),
        (WorldModelConfig, ["optim.ema=[0.9, 0.9]"], "optim.ema"),
        (WorldModelConfig, ["run.fsdp=true"], "run.fsdp"),
        (WorldModelConfig, ["model.encoder_training=frozen", "loss.regularizer=vicreg"], "loss.regularizer"),
        (WorldModelConfig, ["model.encoder_training=frozen", "model.latent_dim=8"], "model.latent_dim"),
        (WorldModelConfig, ["encoder.num_frames=8"], "encoder.num_frames"),  # joint: no clips
        (WorldModelConfig, ["loss.rollout=0", "loss.rollout_steps=3"], "loss.rollout_steps"),
        (WorldModelConfig, ["model.use_states=false", "loss.state_decoding=2"], "loss.state_decoding"),
        (WorldModelConfig, ["data.val_fraction=0", "data.eval_horizon=2"], "data.eval_horizon"),
        (WorldModelConfig, ["distance.steps=0", "distance.lr=0.1"], "distance.lr"),
    ],
)
def test_a_key_that_would_not_act_is_a_one_line_error_of_the_command(tmp_path, capsys, kind, settings, key):
    command = "pretrain" if kind is PretrainConfig else "train-wm"
    argv = [command, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
    assert main([*argv, *(a for s in settings for a in ("--set", s))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vjepa-world {command}: error: {key} ") and "\n" not in error
    assert "drop it" in error and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "settings, key",
    [
        (["online.iterations=5"], "online.iterations"),  # no --online
        (["online.freeze_latents=true"], "online.freeze_latents"),
        (["run.eval_episodes=3"], "run.eval_episodes"),  # no --env to evaluate in
        (["agent.unimix=0.1"], "agent.unimix"),  # train-agent's actions are continuous
    ],
)
def test_a_train_agent_key_that_would_not_act_is_a_one_line_error(tmp_path, capsys, settings, key):
    argv = ["train-agent", "--world-model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
    assert main([*argv, *(a for s in settings for a in ("--set", s))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vjepa-world train-agent: error: {key} ") and "\n" not in error
    assert "drop it" in error and not (tmp_path / "run").exists()


def test_an_encoder_given_to_train_wm_refuses_the_encoder_it_would_pretrain(tmp_path, capsys):
    encoder = tmp_path / "encoder"
    VideoEncoder(get_preset("vit_micro").encoder).save_pretrained(encoder)
    argv = ["train-wm", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--encoder", str(encoder)]
    assert main([*argv, "--set", "model.encoder_training=finetune", "--set", "encoder.steps=5"]) == 2
    assert (
        "encoder.steps sets the encoder train-wm pretrains when it is given none" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"temperature": 0.1}, "temperature"),
        ({"method": "mppi", "elites": 3}, "elites"),
        ({"objective": "state", "energy": "l1"}, "energy"),
    ],
)
def test_a_planner_setting_that_would_not_act_is_refused(changes, key):
    with pytest.raises(ValueError, match=f"^planner.{key} "):
        planner_config("default", **changes)
    planner_config("default", **{k: v for k, v in changes.items() if k != key})  # the rest is fine


def test_uncertainty_settings_without_heads_are_refused():
    none = ["uncertainty.kind=none", "uncertainty.ensemble=0"]
    check_config(build_config({}, none, kind=WorldModelConfig))  # the demo's: no heads, nothing set
    with pytest.raises(ValueError, match=r"uncertainty\.steps fits the uncertainty heads"):
        check_config(build_config({}, [*none, "uncertainty.steps=5"], kind=WorldModelConfig))
    with pytest.raises(ValueError, match=r"uncertainty\.free_nats trains the stochastic latent"):
        check_config(
            build_config({}, ["uncertainty.kind=none", "uncertainty.free_nats=2"], kind=WorldModelConfig)
        )
    with pytest.raises(ValueError, match=r"uncertainty\.lr sets the uncertainty heads"):
        check_config(build_config({}, ["uncertainty.steps=0", "uncertainty.lr=0.1"], kind=WorldModelConfig))
