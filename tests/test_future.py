import json

import pytest
import torch
import torch.nn.functional as F

from conftest import moving_square_frames, randomize_
from vjepa_world import VideoEncoder
from vjepa_world.cli import main
from vjepa_world.data.datasets import VideoDataset
from vjepa_world.data.video import write_video
from vjepa_world.eval.future import HorizonErrors, copy_last, evaluate_future, observed_mean, predict_future
from vjepa_world.jepa import VJEPAModel


def test_horizon_errors_on_a_hand_made_case():
    target = torch.zeros(2, 3, 4, 5)
    target[..., 0] = 1.0  # every token is e0
    predicted = target.clone()
    predicted[:, 1] = -target[:, 1]  # horizon 2: opposite direction, |diff| = 2 on one of 5 dims
    predicted[:, 2, :, 1] = 1.0  # horizon 3: e0 + e1, |diff| = 1 on one dim, cosine 1/sqrt(2)
    errors = HorizonErrors()
    errors.add("m", predicted, target)
    errors.clips = 2
    mean = errors.mean()
    assert mean.l1["m"] == pytest.approx([0.0, 2 / 5, 1 / 5])
    assert mean.cosine["m"] == pytest.approx([0.0, 2.0, 1 - 2**-0.5])


def test_baselines():
    observed = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    assert copy_last(observed, 4)[:, :, 0, 0].tolist() == [[2.0] * 4, [5.0] * 4]
    assert observed_mean(observed, 2)[:, :, 0, 0].tolist() == [[1.0] * 2, [4.0] * 2]


class Oracle(torch.nn.Module):
    """A predictor that returns the truth: the harness must then score it 0 at every horizon."""

    def __init__(self, encoder, video):
        super().__init__()
        self.truth = F.layer_norm(encoder(video), (encoder.config.dim,))

    def forward(self, context, context_idx, target_idx, mask_index=1, grid_hw=None):
        return torch.gather(self.truth, 1, target_idx[..., None].expand(-1, -1, self.truth.shape[-1]))


def test_predict_future_and_a_perfect_predictor():
    model = VJEPAModel({"preset": "vit_micro", "num_frames": 8, "temporal_mask_ratio": 0.5})
    video = torch.randn(2, 3, 8, 32, 32)
    predicted, observed, truth = predict_future(
        model.context_encoder, model.target_encoder, model.predictor, video, 1
    )
    assert predicted.shape == truth.shape == (2, 3, 16, 64) and observed.shape == (2, 1, 16, 64)
    oracle = Oracle(model.target_encoder, video)
    errors = evaluate_future(model.target_encoder, model.target_encoder, oracle, [video], 2, mask_index=2)
    assert errors.l1["predictor"] == [0.0, 0.0] and errors.clips == 2
    assert all(v > 0 for v in errors.l1["copy last"])
    with pytest.raises(ValueError, match="context_steps must be in"):
        predict_future(model.context_encoder, model.target_encoder, model.predictor, video, 4)


def test_the_baselines_do_not_see_the_future():
    """Two clips equal in their observed steps: what the baselines copy must be equal too (the
    full clip's tokens of those steps attend to the later frames, a leak the predictor never gets)."""
    model = VJEPAModel({"preset": "vit_micro", "num_frames": 8, "temporal_mask_ratio": 0.5})
    video = torch.randn(1, 3, 8, 32, 32).expand(2, -1, -1, -1, -1).clone()
    video[1, :, 4:] = torch.randn(3, 4, 32, 32)  # tubelet steps 2 and 3 differ
    _, observed, truth = predict_future(
        model.context_encoder, model.target_encoder, model.predictor, video, 2
    )
    torch.testing.assert_close(observed[0], observed[1])
    assert (truth[0] - truth[1]).abs().mean() > 0.1
    full = F.layer_norm(model.target_encoder(video), (64,))[:, :32]  # the old baseline's steps
    assert (full[0] - full[1]).abs().mean() > 1e-3  # it saw the difference


def test_evaluate_future_command(tmp_path, capsys):
    model = VJEPAModel({"preset": "vit_micro", "num_frames": 8, "temporal_mask_ratio": 0.5})
    model.save_pretrained(tmp_path / "run")
    for i in range(3):
        write_video(
            tmp_path / "data" / f"{i}.mp4", moving_square_frames(frames=16, height=32, width=32, seed=i)
        )
    code = main(
        [
            "evaluate-future",
            "--encoder",
            str(tmp_path / "run"),
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--frames",
            "8",
            "--frame-step",
            "1",
            "--batch-size",
            "2",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["clips"] == 3 and summary["horizons"] == [1, 2]
    assert set(summary["l1"]) == {"predictor", "copy last", "observed mean"}
    assert (tmp_path / "out" / "l1_by_horizon.png").stat().st_size > 1000
    assert "predictor" in capsys.readouterr().out


def test_a_frozen_target_run_is_scored_against_the_target_it_was_trained_on(tmp_path, capsys):
    """model.target=frozen saves the trained context encoder as the run's encoder and the frozen
    target beside it; evaluate-future scores the predictor against that target's tokens, the same
    figures `evaluate_future` gives with it, not against the context encoder's."""
    from vjepa_world.jepa import FROZEN_TARGET_DIR

    config = {"preset": "vit_micro", "num_frames": 8, "temporal_mask_ratio": 0.5, "target": "frozen"}
    model = VJEPAModel(config)
    randomize_(model.context_encoder)  # as after training: the two encoders differ
    model.save_pretrained(tmp_path / "run")
    saved_target = VideoEncoder.from_pretrained(tmp_path / "run" / FROZEN_TARGET_DIR)
    for name, value in saved_target.state_dict().items():
        assert torch.equal(value, model.target_encoder.state_dict()[name]), name
    frames = moving_square_frames(frames=8, height=32, width=32, seed=0)
    write_video(tmp_path / "data" / "0.mp4", frames)
    argv = ["evaluate-future", "--encoder", str(tmp_path / "run"), "--data", str(tmp_path / "data")]
    assert main([*argv, "--out", str(tmp_path / "out"), "--frames", "8", "--frame-step", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    dataset = VideoDataset(tmp_path / "data", num_frames=8, frame_step=1, image_size=32, train=False)
    video = dataset[0]["video"]
    with torch.no_grad():
        expected = evaluate_future(
            model.context_encoder, model.target_encoder, model.predictor, [video[None]], 2
        )
        other = evaluate_future(
            model.context_encoder, model.context_encoder, model.predictor, [video[None]], 2
        )
    assert summary["l1"]["copy last"] == pytest.approx(expected.l1["copy last"], abs=1e-5)
    assert abs(other.l1["copy last"][0] - expected.l1["copy last"][0]) > 1e-3


def test_an_untrained_mask_index_is_refused_naming_the_trained_types(tmp_path, capsys):
    """vitl.yaml-style masks (two multiblock types, no future mask): mask token 2 was never trained.
    The mask types travel with the saved predictor, so the check holds after loading."""
    from vjepa_world import MaskedPredictor

    model = VJEPAModel({"preset": "vit_micro", "num_frames": 8})
    model.save_pretrained(tmp_path / "run")
    predictor = MaskedPredictor.from_pretrained(tmp_path / "run")
    assert predictor.config.mask_types == ["multiblock_8x0.15", "multiblock_2x0.7"]
    video = torch.randn(1, 3, 8, 32, 32)
    trained = r"learned 2 mask types \(0: multiblock_8x0.15, 1: multiblock_2x0.7\)"
    with pytest.raises(ValueError, match="mask index 2 was not trained: this predictor " + trained):
        predict_future(model.context_encoder, model.target_encoder, predictor, video, 2, mask_index=2)
    with pytest.raises(ValueError, match="trained without a future mask"):
        predict_future(model.context_encoder, model.target_encoder, predictor, video, 2)  # the default
    predicted, _, _ = predict_future(
        model.context_encoder, model.target_encoder, predictor, video, 2, mask_index=1
    )
    assert predicted.shape == (1, 2, 16, 64)
    future = VJEPAModel({"preset": "vit_micro", "num_frames": 8, "temporal_mask_ratio": 0.5}).predictor
    assert future.config.mask_types[2] == "future_0.5"
    with pytest.raises(ValueError, match="mask index 3 was not trained"):
        future(torch.zeros(1, 4, 64), torch.arange(4)[None], torch.arange(4, 8)[None], mask_index=3)
    argv = [
        "evaluate-future",
        "--encoder",
        str(tmp_path / "run"),
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--mask-index", "2"]) == 2  # a one-line error, before any video is read
    assert "mask index 2 was not trained" in capsys.readouterr().err
    assert main(argv) == 2  # the default asks for the future mask, which this run never learned
    assert "trained without a future mask" in capsys.readouterr().err
