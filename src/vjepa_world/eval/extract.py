"""Feature extraction: videos in, encoder features out (one row per clip)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from ..data.video import VideoDecodeError, clip_indices, iter_clip_frames, preprocess_clip, video_frame_count
from ..files import atomic_write, write_json
from ..nn import VideoEncoder

log = logging.getLogger(__name__)


@dataclass
class ExtractResult:
    """One row per clip: `video_index[r]` is row r's file, `clip_start[r]` its first frame."""

    features: Tensor  # (R, D), (R, T', D) or (R, N, D) by pooling
    video_index: Tensor  # (R,) int64 into `files`
    clip_start: Tensor  # (R,) int64
    files: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    seconds: float = 0.0

    def save(self, out_dir: str | os.PathLike, **settings) -> Path:
        """Write `features.safetensors` (with the file list in its metadata) and `summary.json`."""
        out_dir = Path(out_dir)
        tensors = {"features": self.features, "video_index": self.video_index, "clip_start": self.clip_start}
        metadata = {"files": json.dumps(self.files), "settings": json.dumps(settings)}
        path = atomic_write(
            out_dir / "features.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata)
        )
        rows = {
            name: [int(r) for r in torch.nonzero(self.video_index == i).flatten()[[0, -1]]]
            for i, name in enumerate(self.files)
            if (self.video_index == i).any()
        }
        summary = {
            "features_file": path.name,
            "feature_shape": list(self.features.shape),
            "clips": len(self.features),
            "videos": len(rows),
            "rows_per_video": {name: {"first": a, "last": b} for name, (a, b) in rows.items()},
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "clips_per_second": round(len(self.features) / max(self.seconds, 1e-9), 3),
            "settings": settings,
        }
        write_json(out_dir / "summary.json", summary)
        return path


def _clips(files: Sequence[Path], frames: int, frame_step: int, clips: int, size: int, skipped: dict):
    """Yield (file number, start frame, clip (3, T, size, size)); bad files are skipped and logged."""
    for number, path in enumerate(files):
        try:
            windows = clip_indices(video_frame_count(path), frames, frame_step, clips)
            for indices, clip in zip(windows, iter_clip_frames(path, windows), strict=True):
                yield number, indices[0], preprocess_clip(clip, size)
        except VideoDecodeError as err:
            skipped[str(path)] = str(err)
            log.warning("skipping %s", err)


def _batches(items: Iterator, batch_size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def extract_features(
    encoder: VideoEncoder,
    files: Sequence[str | os.PathLike],
    *,
    frames: int = 16,
    frame_step: int = 4,
    clips: int = 1,
    size: int | None = None,
    pool: str | None = "mean",
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> ExtractResult:
    """Encode `clips` clips of `frames` frames (every `frame_step`-th frame) from each file.

    Moves the encoder to `device` and `dtype` (bfloat16 halves memory and is the fast CPU path);
    features are returned in float32. Each file is decoded once, streaming. Unreadable files are
    skipped with a warning and listed in `skipped`.
    """
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("no input files to extract features from")
    size = size or encoder.config.image_size
    encoder = encoder.to(device=device, dtype=dtype).eval()
    skipped: dict[str, str] = {}
    features, video_index, clip_start = [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(files), desc="extract", unit="video", disable=not progress)
    seen = -1
    for batch in _batches(_clips(files, frames, frame_step, clips, size, skipped), batch_size):
        numbers, starts, videos = zip(*batch, strict=True)
        video = torch.stack(videos).to(device=device, dtype=dtype)  # (B, 3, T, size, size)
        features.append(encoder.encode(video, pool=pool).float().cpu())
        video_index.extend(numbers)
        clip_start.extend(starts)
        bar.update(numbers[-1] - seen)
        seen = numbers[-1]
    bar.update(len(files) - 1 - seen)
    bar.close()
    if not features:
        raise ValueError(
            f"none of the {len(files)} input files could be decoded: {next(iter(skipped.values()), '')}"
        )
    if skipped:
        log.warning("skipped %d of %d files that could not be decoded", len(skipped), len(files))
    return ExtractResult(
        features=torch.cat(features),
        video_index=torch.tensor(video_index, dtype=torch.int64),
        clip_start=torch.tensor(clip_start, dtype=torch.int64),
        files=[str(f) for f in files],
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )
