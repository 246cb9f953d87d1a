"""`vjepa-world demo --smoke`: every stage of the main job end to end, and reuse on rerun."""

import json

from vjepa_world import WorldModel
from vjepa_world.cli import main


def test_demo_smoke_runs_every_stage_and_reuses_them_when_rerun(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["seconds_per_action"] > 0
    # the default world model is trained jointly, steps 5 env steps at a time and sees the state:
    # MPC still stops at 7
    world_model = WorldModel.from_pretrained(out / "world_model")
    assert (world_model.action_dim, world_model.state_dim, world_model.frame_skip) == (10, 6, 5)
    assert world_model.encoder_training == "joint" and world_model.latent == "vector"
    plan = json.loads((out / "plan" / "summary.json").read_text())
    assert [row["steps"] for row in plan["per_episode"]] == [7, 7]
    for name in (
        "data/meta/info.json",
        "world_model/model.safetensors",
        "plan/episode_000.mp4",
        "plan/energy_by_iteration.png",
        "plan/distance_over_time.png",
        "rollout_error.png",
        "report.md",
    ):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert (
        "| success rate: at the goal at the end (2 episodes) |" in report and "plan/episode_000.mp4" in report
    )
    printed = capsys.readouterr().out
    assert "success rate" in printed and "s per env step" in printed

    weights = out / "world_model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert main(["demo", "--smoke", "--out", str(out)]) == 0  # finished stages are reused
    assert weights.stat().st_mtime_ns == before
