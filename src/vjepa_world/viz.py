"""Plots and videos: PCA colourings of patch tokens (and `visualize_videos`, the `visualize`
command), training curves, confusion matrices, future-prediction and planning plots.

Figures are drawn on `matplotlib.figure.Figure` objects (the Agg canvas, no pyplot global state),
so this works headless and in threads; every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import numpy as np
import torch
from matplotlib.figure import Figure

from .data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_indices,
    find_media,
    preprocess_clip,
    read_clip_frames,
    video_frame_count,
    write_video,
)
from .files import atomic_write, read_log, write_json

GAP = 2  # white pixels between the tiles of a PCA grid image and video

# ---------------------------------------------------------------------------- PCA of patch tokens


def _as_float64(x) -> torch.Tensor:
    """A tensor or array as a CPU float64 tensor (detached), for numerically safe PCA."""
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach()).cpu().double()


def pca_basis(tokens: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `(D,)` and first `k` principal directions `(k', D)` (k' = min(k, D)) of `(M, D)` tokens,
    each direction signed so its largest-magnitude loading is positive (the same colours every run)."""
    mean = tokens.mean(0)
    centred = tokens - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # (D, D), ascending eigenvalues
    components = vectors[:, -k:].flip(-1).T  # (k', D), largest variance first
    rows = torch.arange(components.shape[0])
    signs = torch.sign(components[rows, components.abs().argmax(1)])
    return mean, components * torch.where(signs == 0, 1.0, signs)[:, None]


def _check_tokens(tokens: torch.Tensor, grid: Sequence[int]) -> None:
    if tokens.ndim not in (2, 3):
        raise ValueError(f"tokens must be (N, D) or (B, N, D), got shape {tuple(tokens.shape)}")
    if len(grid) != 3:
        raise ValueError(f"grid must be (T', H', W'), got {tuple(grid)}")
    if math.prod(grid) != tokens.shape[-2]:
        raise ValueError(
            f"tokens hold {tokens.shape[-2]} tokens but grid {tuple(grid)} makes {math.prod(grid)}"
        )


def pca_rgb(tokens, grid: Sequence[int], fit_on=None) -> np.ndarray:
    """Colour patch tokens by their first 3 principal components: float32 `(T', H', W', 3)` in [0, 1]
    for `(N, D)` tokens, `(B, T', H', W', 3)` for `(B, N, D)` (one basis and scale for the batch).

    Each component is min-max scaled over the whole clip (a component with no spread is 0).
    `fit_on` (`(M, D)` or `(B, M, D)` tokens) supplies the mean and basis instead, so several clips
    can be shown in the same colours; the scaling still comes from `tokens`.
    """
    tokens = _as_float64(tokens)
    _check_tokens(tokens, grid)
    dim = tokens.shape[-1]
    fit = tokens if fit_on is None else _as_float64(fit_on)
    if fit.ndim not in (2, 3) or fit.shape[-1] != dim:
        raise ValueError(f"fit_on must be (M, {dim}) or (B, M, {dim}) tokens, got shape {tuple(fit.shape)}")
    mean, components = pca_basis(fit.reshape(-1, dim))
    projected = (tokens.reshape(-1, dim) - mean) @ components.T  # (B*N, k)
    projected = torch.cat([projected, projected.new_zeros(len(projected), 3 - projected.shape[1])], 1)
    low, high = projected.amin(0), projected.amax(0)  # (3,)
    span = high - low
    spread = span > 1e-6 * span.max().clamp_min(1e-300)  # numerical noise is not a component
    scaled = torch.where(spread, (projected - low) / torch.where(spread, span, 1.0), 0.0)
    return scaled.reshape(*tokens.shape[:-2], *grid, 3).float().numpy()


# ---------------------------------------------------------------------------- PCA images and video


def _video_frames(video) -> np.ndarray:
    """uint8 `(T, H, W, 3)` frames from uint8 `(T, H, W, 3)` or ImageNet-normalised float `(3, T, H, W)`."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().float().numpy() if video.is_floating_point() else video.cpu().numpy()
    video = np.asarray(video)
    if video.dtype == np.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"a uint8 video must be (T, H, W, 3), got shape {video.shape}")
        return video
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"a float video must be normalised (3, T, H, W), got shape {video.shape}")
    mean = np.asarray(IMAGENET_MEAN).reshape(3, 1, 1, 1)
    std = np.asarray(IMAGENET_STD).reshape(3, 1, 1, 1)
    rgb = np.clip(video * std + mean, 0.0, 1.0)  # (3, T, H, W)
    return np.round(rgb.transpose(1, 2, 3, 0) * 255).astype(np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _tile(images: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """Join equally sized uint8 `(H, W, 3)` images along `axis` (0: rows, 1: columns) with white gaps."""
    gap_shape = list(images[0].shape)
    gap_shape[axis] = GAP
    gap = np.full(gap_shape, 255, np.uint8)
    parts = [part for image in images for part in (gap, image)][1:]
    return np.concatenate(parts, axis=axis)


def save_pca_visualisation(
    video,
    tokens,
    grid: Sequence[int],
    out_dir: str | os.PathLike,
    name: str = "pca",
    tubelet: int = 2,
    fps: float = 8,
) -> dict[str, Path]:
    """Write `<name>.png` (row 1: the first frame of each tubelet step, row 2: its PCA image, nearest
    upsampled to the frame size) and `<name>.mp4` (every frame beside its step's PCA image).

    `video`: ImageNet-normalised float `(3, T, H, W)` or uint8 `(T, H, W, 3)`; `tokens`: `(N, D)`
    (or `(1, N, D)`) tokens of that clip on `grid` `(T', H', W')`. Returns {"png": path, "mp4": path}.
    """
    frames = _video_frames(video)  # (T, H, W, 3) uint8
    tokens = _as_float64(tokens)
    if tokens.ndim == 3 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be one clip's (N, D), got shape {tuple(tokens.shape)}")
    colours = pca_rgb(tokens, grid)  # (T', H', W', 3)
    steps, rows, cols = grid
    count, height, width = frames.shape[:3]
    if count != steps * tubelet or height % rows or width % cols:
        raise ValueError(
            f"video of {count} frames of {height}x{width} does not fit token grid {tuple(grid)} "
            f"with tubelet {tubelet} (needs {steps * tubelet} frames, sizes divisible by {rows}x{cols})"
        )
    pca = _to_uint8(colours).repeat(height // rows, axis=1).repeat(width // cols, axis=2)  # (T', H, W, 3)

    out_dir = Path(out_dir)
    png = out_dir / f"{name}.png"
    inputs = _tile([frames[t * tubelet] for t in range(steps)], axis=1)  # (H, T'W + gaps, 3)
    sheet = _tile([inputs, _tile(list(pca), axis=1)], axis=0)  # (2H + gap, T'W + gaps, 3)
    atomic_write(png, lambda tmp: matplotlib.image.imsave(tmp, sheet, format="png"))
    side_by_side = [_tile([frame, pca[t // tubelet]], axis=1) for t, frame in enumerate(frames)]
    mp4 = write_video(out_dir / f"{name}.mp4", np.stack(side_by_side), fps=fps)  # (T, H, 2W + gap, 3)
    return {"png": png, "mp4": mp4}


# ---------------------------------------------------------------------------- figures


def _save_figure(fig: Figure, out_path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a figure atomically, in the format its suffix names (png when none); margins come from
    the figures' constrained layout (a tight bounding box would draw everything twice)."""
    out_path = Path(out_path)
    fmt = out_path.suffix.lstrip(".").lower() or "png"
    return atomic_write(out_path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows that hold a finite number under `key`."""
    pairs = [
        (row["step"], float(row[key]))
        for row in rows
        if isinstance(row.get(key), int | float) and math.isfinite(row[key])
    ]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _plot_keys(ax, rows: list[dict], keys: Sequence[str]) -> None:
    """One line per key; a log y-axis when every value is positive and they span over a decade."""
    values = []
    for key in keys:
        steps, ys = _series(rows, key)
        ax.plot(steps, ys, label=key, linewidth=1.2)
        values += ys
    if values and min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def plot_training_curves(
    run: str | os.PathLike | Sequence[dict], out_path: str | os.PathLike, keys: Sequence[str] | None = None
) -> Path:
    """Plot a training log (a run folder's `log.jsonl` or its rows): the losses (`keys`, default
    "loss" and every "loss/..." key) vs step, the learning rate in a small panel beneath and, when
    logged, the collapse signals (predictor/target feature std, target effective rank)."""
    given = isinstance(run, list | tuple)
    rows = list(run) if given else read_log(Path(run))
    if not rows:
        raise ValueError(f"no training log rows in {'the rows given' if given else Path(run) / 'log.jsonl'}")
    logged = sorted({key for row in rows for key in row})
    keys = list(keys) if keys is not None else [k for k in logged if k == "loss" or k.startswith("loss/")]
    missing = [k for k in keys if k not in logged]
    if not keys or missing:
        raise ValueError(f"log has no {missing or 'loss'} key; it holds {logged}")
    stds = [k for k in logged if k.startswith("pred_std/") or k == "target_std"]
    ranks = [k for k in logged if k == "target_rank"]
    has_lr = "lr" in logged
    heights = [3] + [1] * has_lr + [2] * bool(stds or ranks)

    fig = Figure(figsize=(7, 1.6 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = list(axes[:, 0])
    axes[-1].set_xlabel("step")
    loss_ax = axes.pop(0)
    _plot_keys(loss_ax, rows, keys)
    loss_ax.set_ylabel("loss")
    if has_lr:
        lr_ax = axes.pop(0)
        lr_ax.plot(*_series(rows, "lr"), color="tab:gray", linewidth=1)
        lr_ax.set_ylabel("lr")
        lr_ax.grid(alpha=0.3)
    if stds or ranks:
        collapse_ax = axes.pop(0)
        if stds:
            _plot_keys(collapse_ax, rows, stds)
            collapse_ax.set_ylabel("feature std")
        rank_ax = collapse_ax.twinx() if stds and ranks else collapse_ax
        if ranks:  # on its own axis: a rank is in the tens or hundreds, a std near 1
            rank_ax.plot(*_series(rows, "target_rank"), color="black", linestyle="--", label="target_rank")
            rank_ax.set_ylabel("target effective rank")
            rank_ax.legend(fontsize="small", loc="lower right")
    loss_ax.set_title("training curves" if given else Path(run).name)
    return _save_figure(fig, out_path)


def confusion_matrix(labels, predictions, num_classes: int, normalize: bool = False) -> np.ndarray:
    """`(C, C)` matrix, rows = true class, columns = predicted class: counts, or each row's fractions
    (a class with no samples keeps a zero row) with `normalize`."""
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}")
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    if not normalize:
        return counts
    totals = counts.sum(1, keepdims=True)
    return counts / np.maximum(totals, 1)


def plot_confusion_matrix(
    labels, predictions, class_names: Sequence[str], out_path: str | os.PathLike, normalize: bool = True
) -> Path:
    """Heat map of the confusion matrix (row-normalised with `normalize`), each cell annotated with
    its percentage and count (count only without `normalize`); the title gives the accuracy."""
    num_classes = len(class_names)
    counts = confusion_matrix(labels, predictions, num_classes)
    shown = confusion_matrix(labels, predictions, num_classes, normalize) if normalize else counts
    accuracy = np.trace(counts) / max(counts.sum(), 1)

    side = max(4.0, 0.5 * num_classes + 2)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(counts.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {100 * accuracy:.1f}% ({np.trace(counts)}/{counts.sum()})")
    if num_classes <= 30:  # beyond that the numbers are unreadable
        threshold = 0.5 * (1 if normalize else max(counts.max(), 1))
        for i in range(num_classes):
            for j in range(num_classes):
                text = f"{100 * shown[i, j]:.0f}%\n({counts[i, j]})" if normalize else str(counts[i, j])
                colour = "white" if shown[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize="x-small", color=colour)
    return _save_figure(fig, out_path)


def plot_errors_by_horizon(
    horizons: Sequence[float],
    curves: dict[str, Sequence[float]],
    out_path: str | os.PathLike,
    ylabel: str = "L1 error",
    title: str | None = None,
) -> Path:
    """Error vs prediction horizon, one line per method (e.g. "predictor", "copy last", "clip mean"),
    for the future-prediction evaluation."""
    if not curves:
        raise ValueError("curves is empty: give at least one method's errors")
    for method, errors in curves.items():
        if len(errors) != len(horizons):
            raise ValueError(f"curve {method!r} has {len(errors)} values for {len(horizons)} horizons")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for method, errors in curves.items():
        ax.plot(horizons, errors, marker="o", label=method)
    ax.set_xlabel("prediction horizon")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, out_path)


def plot_energy_by_iteration(energies: Sequence[Sequence[float]], out_path: str | os.PathLike) -> Path:
    """Planner energy (best sample) vs iteration: the mean over every replanning, with the 10th-90th
    percentile band; it should fall, then flatten as the search converges."""
    if not energies:
        raise ValueError("no planner energies to plot: run at least one planning step")
    values = np.asarray(energies, dtype=np.float64)  # (replannings, iterations)
    iterations = np.arange(1, values.shape[1] + 1)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(iterations, values.mean(0), marker="o", label=f"mean over {len(values)} plans")
    low, high = np.percentile(values, [10, 90], axis=0)
    ax.fill_between(iterations, low, high, alpha=0.25, label="10th-90th percentile")
    ax.set_xlabel("planner iteration")
    ax.set_ylabel("energy of the best sample")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, out_path)


def plot_distance_over_time(
    planned: Sequence[Sequence[float]],
    random: Sequence[Sequence[float]],
    out_path: str | os.PathLike,
    radius: float | None = None,
) -> Path:
    """Distance to the goal vs environment step: every planned episode (thin) and the mean, against
    random actions from the same starts, with the success radius."""
    if not planned:
        raise ValueError("no episode distances to plot (the environment reports no info['distance'])")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, runs, colour in (("planning", planned, "tab:blue"), ("random actions", random, "tab:gray")):
        if not runs:
            continue
        length = min(len(r) for r in runs)
        values = np.asarray([r[:length] for r in runs], dtype=np.float64)  # (episodes, steps + 1)
        for row in values:
            ax.plot(row, color=colour, alpha=0.15, linewidth=0.8)
        ax.plot(values.mean(0), color=colour, linewidth=2.5, label=f"{label} (mean of {len(values)})")
    if radius is not None:
        ax.axhline(radius, color="tab:green", linestyle="--", label="success radius")
    ax.set_xlabel("environment step")
    ax.set_ylabel("distance to the goal")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, out_path)


@torch.no_grad()
def visualize_videos(
    encoder, inputs, out: str | os.PathLike, *, frames: int = 16, frame_step: int = 4, size: int | None = None
) -> dict:
    """`vjepa-world visualize`: for one clip of each video or image of `inputs` (files or folders),
    `save_pca_visualisation` of the encoder's tokens as OUT/<name>.png and .mp4, and `summary.json`
    (the files written per input). Returns the summary."""
    out, written = Path(out), {}
    size = size or encoder.config.image_size
    for path in find_media(inputs):
        window = clip_indices(video_frame_count(path), frames, frame_step, 1)[0]
        clip = preprocess_clip(read_clip_frames(path, window), size)  # (3, T, size, size)
        tokens = encoder(clip[None])[0]
        paths = save_pca_visualisation(
            clip,
            tokens,
            encoder.grid(clip[None]),
            out,
            name=Path(path).stem,
            tubelet=encoder.config.tubelet_size,
        )
        written[str(path)] = {kind: str(p) for kind, p in paths.items()}
    summary = {"videos": written, "settings": {"frames": frames, "frame_step": frame_step, "size": size}}
    write_json(out / "summary.json", summary)
    return summary
