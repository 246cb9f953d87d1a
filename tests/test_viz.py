import json

import av
import matplotlib.image
import numpy as np
import pytest
import torch

from vjepa_world.data.video import normalize
from vjepa_world.viz import (
    GAP,
    confusion_matrix,
    pca_rgb,
    plot_confusion_matrix,
    plot_errors_by_horizon,
    plot_training_curves,
    save_pca_visualisation,
)

GRID = (2, 4, 6)  # (T', H', W'): 48 tokens
N = 2 * 4 * 6


def low_rank_tokens(scales=(3.0, 2.0, 1.0), dim=32, seed=0, basis=None):
    """Tokens = known 3-D signal @ orthonormal (3, D) basis, plus an offset: the signal's columns are
    centred and uncorrelated with the given spreads, so they are exactly the principal components."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(N, 3, generator=g, dtype=torch.float64)
    signal = torch.linalg.qr(noise - noise.mean(0))[0]  # centred, orthonormal columns
    signal = signal * torch.tensor(scales, dtype=torch.float64)  # (N, 3)
    if basis is None:
        basis = torch.linalg.qr(torch.randn(dim, 3, generator=g, dtype=torch.float64))[0].T  # (3, D)
    offset = torch.randn(dim, generator=g, dtype=torch.float64)
    return signal @ basis + offset, signal.numpy(), basis


def abs_corr(a, b):
    return abs(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def minmax(x):
    return (x - x.min(0)) / (x.max(0) - x.min(0))


def test_pca_recovers_low_rank_signal():
    tokens, signal, _ = low_rank_tokens()
    image = pca_rgb(tokens.float(), GRID)
    assert image.shape == (*GRID, 3) and image.dtype == np.float32
    flat = image.reshape(N, 3)
    for c in range(3):  # channel c: an affine (maybe sign-flipped) copy of signal column c, min-max scaled
        assert abs_corr(flat[:, c], signal[:, c]) > 0.999
        expected = minmax(signal[:, c])
        assert any(np.allclose(flat[:, c], e, atol=1e-4) for e in (expected, 1 - expected))
        assert flat[:, c].min() == 0 and flat[:, c].max() == pytest.approx(1)
    assert np.all(image >= 0) and np.all(image <= 1)


def test_pca_sign_convention_is_deterministic():
    tokens, _, _ = low_rank_tokens(dim=16)
    tokens = tokens + 0.01 * torch.randn(tokens.shape, dtype=torch.float64)
    image = pca_rgb(tokens, GRID)
    assert np.array_equal(image, pca_rgb(tokens.numpy(), GRID))  # tensors and arrays alike
    # negating the tokens keeps the basis (same signs), so every colour flips: x -> 1 - x
    assert np.allclose(pca_rgb(-tokens, GRID), 1 - image, atol=1e-5)


def test_pca_batch_and_fit_on():
    first, _, basis = low_rank_tokens(seed=1)
    second, signal, _ = low_rank_tokens(scales=(1.0, 2.0, 3.0), seed=2, basis=basis)
    # its own basis orders components by spread: channel 0 follows signal column 2
    own = pca_rgb(second, GRID).reshape(N, 3)
    assert abs_corr(own[:, 0], signal[:, 2]) > 0.999
    # the first clip's basis keeps the first clip's order: channel c follows column c
    shared = pca_rgb(second, GRID, fit_on=first).reshape(N, 3)
    for c in range(3):
        assert abs_corr(shared[:, c], signal[:, c]) > 0.999
    assert np.allclose(pca_rgb(first, GRID, fit_on=first[None]), pca_rgb(first, GRID))

    batch = pca_rgb(torch.stack([first, second]), GRID)  # one basis and scale for the batch
    assert batch.shape == (2, *GRID, 3)
    assert np.allclose(batch.reshape(-1, 3).min(0), 0) and np.allclose(batch.reshape(-1, 3).max(0), 1)


def test_pca_degenerate_components_are_zero():
    tokens = torch.zeros(N, 8)
    tokens[:, 0] = torch.arange(N)  # rank 1: the other two channels have no spread
    image = pca_rgb(tokens, GRID).reshape(N, 3)
    assert np.allclose(image[:, 0], np.arange(N) / (N - 1), atol=1e-6)
    assert np.all(image[:, 1:] == 0)


@pytest.mark.parametrize(
    ("tokens", "grid", "fit_on", "match"),
    [
        (torch.randn(N + 1, 8), GRID, None, "grid"),
        (torch.randn(N, 8), (2, 4), None, "grid"),
        (torch.randn(N), GRID, None, r"\(N, D\)"),
        (torch.randn(N, 8), GRID, torch.randn(10, 9), "fit_on"),
    ],
)
def test_pca_bad_shapes(tokens, grid, fit_on, match):
    with pytest.raises(ValueError, match=match):
        pca_rgb(tokens, grid, fit_on=fit_on)


def clip(frames=4, height=32, width=48):
    """uint8 (T, H, W, 3) frames of smooth colour ramps that change over time."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    rgb = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 60) + 40 * t], -1)
    return rgb.astype(np.uint8)


def read_mp4(path):
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack(frames)


@pytest.mark.parametrize("normalised", [True, False])
def test_save_pca_visualisation(tmp_path, normalised):
    frames = clip()  # 4 frames of 32x48: grid (2, 4, 6) with tubelet 2 and 8 px patches
    video = normalize(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255) if normalised else frames
    tokens, _, _ = low_rank_tokens()
    paths = save_pca_visualisation(video, tokens.float(), GRID, tmp_path / "viz", name="clip")
    assert paths == {"png": tmp_path / "viz" / "clip.png", "mp4": tmp_path / "viz" / "clip.mp4"}

    sheet = matplotlib.image.imread(paths["png"])[..., :3]  # float in [0, 1]
    assert sheet.shape == (2 * 32 + GAP, 2 * 48 + GAP, 3)
    assert np.abs(sheet[:32, :48] * 255 - frames[0]).max() <= 1  # row 1: frame 0, then frame 2
    assert np.abs(sheet[:32, 48 + GAP :] * 255 - frames[2]).max() <= 1
    pca = pca_rgb(tokens, GRID)
    bottom = sheet[32 + GAP :, 48 + GAP :]  # row 2: step 1's PCA image, 8x8 blocks
    assert np.allclose(bottom[::8, ::8], pca[1], atol=1 / 255)
    assert np.allclose(bottom, np.repeat(np.repeat(pca[1], 8, 0), 8, 1), atol=1 / 255)
    assert not list((tmp_path / "viz").glob(".*tmp*"))

    movie = read_mp4(paths["mp4"])
    assert movie.shape == (4, 32, 2 * 48 + GAP, 3)  # every frame beside its PCA image
    assert np.abs(movie[1, :, :48].astype(int) - frames[1]).mean() < 8  # lossy codec


def test_save_pca_visualisation_bad_shapes(tmp_path):
    tokens = torch.randn(N, 8)
    with pytest.raises(ValueError, match="does not fit token grid"):
        save_pca_visualisation(clip(frames=6), tokens, GRID, tmp_path)  # 6 frames, 2 steps of 2
    with pytest.raises(ValueError, match="does not fit token grid"):
        save_pca_visualisation(clip(width=50), tokens, GRID, tmp_path)
    with pytest.raises(ValueError, match="grid"):
        save_pca_visualisation(clip(), torch.randn(N - 1, 8), GRID, tmp_path)
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        save_pca_visualisation(np.zeros((4, 32, 48, 3), np.float32), tokens, GRID, tmp_path)
    with pytest.raises(ValueError, match="one clip"):
        save_pca_visualisation(clip(), torch.randn(2, N, 8), GRID, tmp_path)
    assert not list(tmp_path.iterdir())


def assert_nontrivial_image(path, min_side=100):
    image = matplotlib.image.imread(path)
    assert min(image.shape[:2]) >= min_side
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


def log_rows(steps=30, collapse=True):
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 2.0 / step, "loss/short": 2.5 / step, "lr": 1e-3 * min(1, step / 5)}
        if collapse:
            row |= {"pred_std/short": 0.5, "target_std": 0.4 + step / 100, "target_rank": 10.0 + step}
        rows.append(row)
    return rows


def test_plot_training_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log_rows()))
    with_collapse = assert_nontrivial_image(plot_training_curves(run, tmp_path / "curves.png"))
    rows = log_rows(collapse=False)
    plain = assert_nontrivial_image(plot_training_curves(rows, tmp_path / "plain.png", keys=["loss"]))
    assert with_collapse.shape[0] > plain.shape[0]  # the collapse panel adds height

    with pytest.raises(ValueError, match="no training log rows"):
        plot_training_curves(tmp_path / "missing", tmp_path / "x.png")
    with pytest.raises(ValueError, match="nope"):
        plot_training_curves(log_rows(), tmp_path / "x.png", keys=["nope"])


def test_confusion_matrix_values_and_plot(tmp_path):
    labels = [0, 0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 0, 1, 1, 2, 2]
    counts = confusion_matrix(labels, predictions, num_classes=4)
    assert counts.tolist() == [[3, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    fractions = confusion_matrix(labels, predictions, num_classes=4, normalize=True)
    assert np.allclose(fractions, [[0.75, 0.25, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 0]])

    names = ["walk", "run", "jump", "sit"]
    assert_nontrivial_image(plot_confusion_matrix(labels, predictions, names, tmp_path / "cm.png"))
    path = plot_confusion_matrix(labels, predictions, names, tmp_path / "counts.png", normalize=False)
    assert_nontrivial_image(path)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix([0, 1], [0, 4], num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix([0, 1, 2], [0, 1], names, tmp_path / "bad.png")


def test_plot_errors_by_horizon(tmp_path):
    horizons = [1, 2, 4, 8]
    curves = {"predictor": [0.2, 0.25, 0.3, 0.4], "copy last": [0.3, 0.4, 0.5, 0.6], "clip mean": [0.5] * 4}
    assert_nontrivial_image(plot_errors_by_horizon(horizons, curves, tmp_path / "horizon.png"))
    svg = plot_errors_by_horizon(horizons, curves, tmp_path / "horizon.svg", ylabel="MSE", title="rollout")
    assert svg.read_text().lstrip().startswith("<?xml") and "rollout" in svg.read_text()
    with pytest.raises(ValueError, match="'predictor' has 3 values for 4 horizons"):
        plot_errors_by_horizon(horizons, {"predictor": [0.1, 0.2, 0.3]}, tmp_path / "bad.png")


def test_visualize_command(tmp_path, video_file, capsys):
    from vjepa_world.cli import main

    code = main(
        [
            "visualize",
            "--data",
            str(video_file),
            "--encoder",
            "random:vit_micro",
            "--frames",
            "4",
            "--out",
            str(tmp_path / "pca"),
        ]
    )
    assert code == 0
    assert (tmp_path / "pca" / "clip.png").stat().st_size > 500 and (tmp_path / "pca" / "clip.mp4").exists()
    summary = json.loads((tmp_path / "pca" / "summary.json").read_text())
    assert summary["videos"][str(video_file)]["png"] == str(tmp_path / "pca" / "clip.png")
