"""Every Python block of the README runs as written, on tiny models saved under the paths it names."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_world import MaskedPredictor, VideoEncoder, WorldModel
from vjepa_world.config import EncoderConfig, PredictorConfig
from vjepa_world.data.episodes import Episode, write_lerobot_dataset
from vjepa_world.nn.projector import LatentProjector, ProjectorConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _tiny_files(root: Path) -> None:
    """What the blocks load: `vitl.pt` (a tiny encoder + predictor directory), `runs/reacher-wm`
    (a tiny joint world model) and `data/reacher` (one episode of 64 px frames)."""
    grid = {"patch_size": 16, "image_size": 64, "num_frames": 4}
    encoder = VideoEncoder(EncoderConfig(dim=64, depth=2, num_heads=2, **grid))
    predictor = MaskedPredictor(PredictorConfig(encoder_dim=64, dim=32, depth=1, num_heads=2, **grid))
    encoder.save_pretrained(root / "vitl.pt", predictor=predictor)
    projector = LatentProjector(ProjectorConfig(tokens=16, encoder_dim=64, hidden_dim=32, latent_dim=8))
    world_model = WorldModel(
        encoder,
        projector=projector,
        encoder_training="joint",
        frame_skip=5,
        action_dim=10,
        state_dim=6,
        dim=32,
        depth=2,
        num_heads=2,
    )
    world_model.save_pretrained(root / "runs" / "reacher-wm")
    rng = np.random.default_rng(0)
    episode = Episode(
        frames=rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8),
        actions=rng.uniform(-1, 1, (6, 2)).astype(np.float32),
        states=np.zeros((6, 6), np.float32),
        rewards=np.zeros(6, np.float32),
        dones=np.zeros(6, bool),
        fps=50.0,
        task="reach",
    )
    write_lerobot_dataset(root / "data" / "reacher", [episode], progress=False)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs_as_written(index, tmp_path, monkeypatch):
    _tiny_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with torch.no_grad():
        exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), namespace)
    if "futures" in namespace:  # the world-model block: 16 plans of 3 steps, one 8-d latent per frame
        assert namespace["futures"].shape == (16, 3, 1, 8)
    if "predicted" in namespace:  # the quick start: 1024 targets of the 2048 tokens
        assert namespace["predicted"].shape == (1, 1024, 64)
        assert (tmp_path / "my-model" / "model.safetensors").is_file()
