"""The design document's seed API: examples/seed_api.py runs as written, and its pieces behave."""

import subprocess
import sys
from pathlib import Path

import torch

from vjepa_world.seed import ActionConditionedVJEPA, VJEPAModel, WorldModel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_api.py"


def test_the_seed_examples_run_as_written(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines() if line.strip())
    assert lines["latents"] == "(4, 16, 64)" and lines["imagined"] == "(1, 3, 16, 64)"
    assert lines["features"] == "(1, 32, 64)" and lines["per_frame"] == "(1, 2, 64)"
    assert lines["action"] == "(1, 4)"
    assert (tmp_path / "world_model" / "world_model.json").is_file()


def test_pretrain_trains_the_model_in_place_and_the_action_input_waits_for_data(tmp_path, video_file):
    config = {
        "encoder_dim": 64,
        "predictor_dim": 32,
        "num_frames": 4,
        "mask_ratio": 0.75,
        "temporal_mask_ratio": 0.5,
    }
    vjepa = VJEPAModel({**config, "preset": "vit_micro"})
    before = [p.detach().clone() for p in vjepa.context_encoder.parameters()]
    summary = vjepa.pretrain(
        [video_file, video_file], tmp_path / "run", steps=2, batch_size=2, progress=False
    )
    assert summary["finished"] and summary["steps"] == 2 and Path(summary["out"]) == tmp_path / "run"
    assert any(not torch.equal(a, b) for a, b in zip(before, vjepa.context_encoder.parameters(), strict=True))
    world_model = ActionConditionedVJEPA(vjepa)
    assert world_model.encoder is vjepa.target_encoder and world_model.predictor is None
    world_model.add_action_input()
    z = world_model.encode(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
    assert world_model.rollout(z, torch.zeros(2, 3, 5)).shape == (2, 3, 16, 64)  # built for 5-D actions
    assert world_model.action_dim == 5
    given = WorldModel(vjepa).add_action_input(7)
    assert given.action_dim == 7 and isinstance(given, WorldModel)
