import json

import numpy as np
import torch

from conftest import moving_square_frames
from vjepa_world import EncoderConfig, VideoEncoder
from vjepa_world.cli import main
from vjepa_world.data.video import write_video
from vjepa_world.eval.probes import AttentiveProbe
from vjepa_world.eval.probing import Features, FeatureSettings, encode_csv, per_video, train_heads


def labelled_csv(folder, name, count, seed):
    """Videos whose label (0/1) is whether the square moves at all: needs more than one frame."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        label = i % 2
        frames = moving_square_frames(frames=8, height=32, width=32, seed=int(rng.integers(1000)))
        if label == 0:
            frames[:] = frames[0]
        path = write_video(folder / name / f"{i}.mp4", frames, fps=8)
        lines.append(f"{name}/{path.name},{label}")
    csv = folder / f"{name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_encode_csv_caches_and_groups_clips(tmp_path):
    csv = labelled_csv(tmp_path, "train", 4, 0)
    encoder = VideoEncoder(
        EncoderConfig(dim=64, depth=1, num_heads=2, patch_size=8, image_size=32, num_frames=4)
    )
    settings = FeatureSettings(frames=4, frame_step=1, clips=2, layers=[0])
    first = encode_csv(encoder, csv, settings, cache_dir=tmp_path / "cache", workers=0, progress=False)
    assert first.tokens.shape == (8, 32, 64) and first.videos.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert first.labels.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = encode_csv(encoder, csv, settings, cache_dir=tmp_path / "cache", workers=0, progress=False)
    assert torch.equal(again.tokens, first.tokens)
    other = VideoEncoder(encoder.config)  # other weights: another cache entry
    encode_csv(other, csv, settings, cache_dir=tmp_path / "cache", workers=0, progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    views = FeatureSettings(frames=4, frame_step=1, clips=2, views=3)  # 2 clips x 3 crops per video
    crops = encode_csv(encoder, csv, views, workers=0, progress=False)
    assert crops.tokens.shape == (24, 32, 64) and crops.videos.tolist() == [
        v for v in range(4) for _ in range(6)
    ]


def test_per_video_averages_clip_probabilities():
    features = Features(torch.zeros(4, 1, 1), torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))
    scores, labels = per_video(torch.tensor([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]]), features)
    torch.testing.assert_close(scores, torch.tensor([[0.4, 0.6], [0.75, 0.25]]))
    assert labels.tolist() == [1, 0]


def test_heads_learn_separable_tokens():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    direction = torch.randn(16, generator=g)  # a class direction (a constant shift would vanish in LayerNorm)
    tokens = torch.randn(64, 6, 16, generator=g) + (2.0 * labels[:, None, None] - 1) * direction
    train = Features(tokens[:48], labels[:48], torch.arange(48))
    val = Features(tokens[48:], labels[48:], torch.arange(16))
    for kind in ("attentive", "linear", "knn"):
        _, summary = train_heads(
            train,
            val,
            kind=kind,
            lrs=(1e-3, 1e-2),
            weight_decays=(0.01,),
            epochs=8,
            num_heads=4,
            progress=False,
        )
        assert summary["best"]["top1"] == 1.0, kind
        if kind != "knn":
            assert len(summary["heads"]) == 2 and len(summary["heads"][0]["epochs"]) == 8


def probe_command(tmp_path, train_videos: int, val_videos: int, *extra: str) -> list[str]:
    """`vjepa-world probe` arguments for a small labelled set and a micro encoder."""
    train, val = (
        labelled_csv(tmp_path, "train", train_videos, 0),
        labelled_csv(tmp_path, "val", val_videos, 1),
    )
    settings = ["--frames", "8", "--frame-step", "1", "--heads", "2", "--lr", "1e-3", "--batch-size", "4"]
    return ["probe", "--encoder", "random:vit_micro", "--train", str(train), "--val", str(val),
            "--out", str(tmp_path / "o"), *settings, *extra]  # fmt: skip


def test_probe_command(tmp_path, capsys):
    assert main(probe_command(tmp_path, 12, 6, "--epochs", "3", "--wd", "0.01", "0.1", "--views", "2")) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(summary["heads"]) == 2 and 0 <= summary["best"]["top1"] <= 1
    assert summary["settings"]["views"] == 2
    assert "epoch 3: best head top-1" in capsys.readouterr().out
    probe = AttentiveProbe.from_released(tmp_path / "o" / "probe.pt")
    assert probe.config.num_heads == 2 and probe.config.num_classes == 2
    assert (tmp_path / "o" / "confusion_matrix.png").stat().st_size > 1000


def test_probe_with_augmentation_encodes_every_epoch(tmp_path):
    assert main(probe_command(tmp_path, 6, 4, "--epochs", "2", "--wd", "0.01", "--augment")) == 0
    assert len(list((tmp_path / "o" / "cache").iterdir())) == 1  # only the validation features are cached
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(summary["heads"][0]["epochs"]) == 2


def test_probe_command_with_positions_pooled_regions_and_bf16(tmp_path):
    extra = ["--epochs", "2", "--wd", "0.01", "--positions", "--pool-regions", "2", "--dtype", "bfloat16"]
    assert main(probe_command(tmp_path, 8, 4, *extra)) == 0
    probe = AttentiveProbe.from_released(tmp_path / "o" / "probe.pt")  # vit_micro: 8 frames, 32 px, patch 8
    assert (probe.config.grid, probe.config.positions, probe.config.regions) == ((4, 4, 4), True, 2)
    assert probe(torch.randn(3, 64, 64)).shape == (3, 2)  # full tokens in, pooled inside
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["settings"]["positions"] and summary["settings"]["pool_regions"] == 2
