"""Video datasets for self-supervised pretraining: deterministic per-key clips, bad files skipped."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from .transforms import random_resized_crop
from .video import (
    VideoDecodeError,
    clip_indices,
    clip_window,
    find_media,
    last_clip_start,
    preprocess_clip,
    read_clip_frames,
    video_info,
)

log = logging.getLogger(__name__)
_warned: set[str] = set()  # files already reported as unreadable by this process


def _warn_once(path: Path, err: Exception) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("skipping unreadable file: %s", err)


def _read_csv(path: Path) -> tuple[list[Path], list[str | None]]:
    """Files and raw labels (None where missing) of a `path[,label]` CSV without header."""
    files, labels = [], []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if not row or not row[0].strip():
                continue
            files.append(path.parent / row[0].strip())  # an absolute path stays absolute
            labels.append(row[1].strip() if len(row) > 1 and row[1].strip() else None)
    return files, labels


def _label_ids(labels: Sequence[str | None]) -> tuple[list[int], list[str] | None]:
    """Int labels as they are; string labels mapped to ids in sorted order (returned as classes)."""
    try:
        return [int(label) if label is not None else -1 for label in labels], None
    except ValueError:
        classes = sorted({label for label in labels if label is not None})
        ids = {name: i for i, name in enumerate(classes)}
        return [ids[label] if label is not None else -1 for label in labels], classes


def load_source(
    source: str | os.PathLike | Sequence[str | os.PathLike],
) -> tuple[list[Path], list[int], list[str] | None]:
    """`(files, labels, classes)` of a folder (searched recursively), a `path[,label]` CSV, a file or
    a list of files and folders; labels are -1 where none is given, classes name string labels."""
    if not isinstance(source, (str, os.PathLike)):
        files = find_media(source)
        return files, [-1] * len(files), None
    path = Path(source)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise ValueError(f"CSV file {path} does not exist: pass an existing `path[,label]` CSV")
        files, raw = _read_csv(path)
        if not files:
            raise ValueError(f"CSV file {path} lists no files: write one `path[,label]` per line")
        return files, *_label_ids(raw)
    if not path.exists():
        raise ValueError(f"data source {path} does not exist: pass a folder, a CSV or a list of files")
    files = find_media([path])
    return files, [-1] * len(files), None


def _generator(seed: int, key: int) -> torch.Generator:
    """A generator seeded from (seed, key) by a hash, so nearby seeds and keys are unrelated."""
    state = np.random.SeedSequence([seed, key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class VideoDataset(Dataset):
    """Clips of `num_frames` frames (every `frame_step`-th) from videos and images, for pretraining.

    Item `key = epoch * len(self) + index`: the epoch changes the augmentation, and all randomness
    comes from (seed, key), so an item is identical in any worker or process and after a resume.
    Index `i` is view `i % views` of clip `(i // views) % clips_per_video` of file
    `i // (clips_per_video * views)` (views: spatial crops, evaluation only). A file that cannot be
    decoded is replaced by the next one (deterministically) and counted in the item's `bad_files`.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        num_frames: int,
        frame_step: int = 4,
        fps: float | None = None,
        clips_per_video: int = 1,
        views: int = 1,
        image_size: int = 224,
        train: bool = True,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 1.35),
    ):
        if min(num_frames, frame_step, clips_per_video, views) < 1:
            raise ValueError(
                f"num_frames, frame_step, clips_per_video and views must be >= 1, "
                f"got {num_frames}, {frame_step}, {clips_per_video}, {views}"
            )
        if train and views > 1:
            raise ValueError("views are evaluation crops: use views=1 with train=True (crops are random)")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive (or None to use frame_step), got {fps}")
        self.source = source
        self.files, self.labels, self.classes = load_source(source)  # classes: names of string labels
        if not self.files:
            raise ValueError(f"data source {source} holds no files")
        self.num_frames, self.frame_step, self.fps = num_frames, frame_step, fps
        self.clips_per_video, self.image_size, self.train, self.seed = (
            clips_per_video,
            image_size,
            train,
            seed,
        )
        self.views, self.crop_scale, self.crop_ratio = views, crop_scale, crop_ratio

    def __len__(self) -> int:
        return len(self.files) * self.clips_per_video * self.views

    def _step(self, video_fps: float | None) -> int:
        """Frames between sampled frames: `frame_step`, or the video's rate over the target `fps`."""
        if self.fps is None or not video_fps:
            return self.frame_step
        return max(1, round(video_fps / self.fps))

    def _load(self, path: Path, clip: int, view: int, generator: torch.Generator) -> Tensor:
        """One clip of one file, `(3, T, S, S)`: random start and crop in training, else the
        `clip`-th of `clips_per_video` evenly spaced clips, `view`-th crop, evaluation transform."""
        count, video_fps = video_info(path)
        step = self._step(video_fps)
        if self.train:
            room = last_clip_start(count, self.num_frames, step)
            start = int(torch.randint(room + 1, (), generator=generator).item())
            indices = clip_window(start, count, self.num_frames, step)
            frames = read_clip_frames(path, indices)  # (T, H, W, 3) uint8
            return random_resized_crop(frames, self.image_size, generator, self.crop_scale, self.crop_ratio)
        windows = clip_indices(count, self.num_frames, step, self.clips_per_video)
        frames = read_clip_frames(path, windows[min(clip, len(windows) - 1)])  # short videos: fewer windows
        return preprocess_clip(frames, self.image_size, view, self.views)

    def __getitem__(self, key: int) -> dict:
        index = int(key) % len(self)
        number, clip = divmod(index // self.views, self.clips_per_video)
        view = index % self.views
        first_error = None
        for bad in range(len(self.files)):
            file = (number + bad) % len(self.files)
            path = self.files[file]
            try:
                video = self._load(path, clip, view, _generator(self.seed, int(key)))
            except (VideoDecodeError, av.error.FFmpegError, OSError) as err:
                _warn_once(path, err)
                first_error = err if first_error is None else first_error
                continue
            return {"video": video, "label": self.labels[file], "index": index, "bad_files": bad}
        raise ValueError(
            f"none of the {len(self.files)} files in {self.source} could be decoded "
            f"(first error: {first_error})"
        )


class EpochSampler(Sampler):
    """An endless stream of dataset keys `epoch * dataset_size + index`, split across ranks.

    Epoch `e` is a permutation seeded with `seed + e`, cut into global batches of
    `world_size * batch_size` keys; rank `r` takes the r-th `batch_size` keys of each, so the global
    batch (rank 0's rows, then rank 1's, ...) is the same whatever the number of processes, and
    every rank runs the same number of steps. `start` skips the keys this rank has already
    consumed (a resume) without touching the data.
    """

    def __init__(
        self,
        dataset_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        batch_size: int = 1,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        if dataset_size < world_size * batch_size:
            raise ValueError(
                f"dataset of {dataset_size} items is smaller than one global batch ({world_size} processes x "
                f"{batch_size}): add data or clips_per_video, or use a smaller batch"
            )
        if start < 0:
            raise ValueError(f"start must be >= 0 (keys already consumed), got {start}")
        self.dataset_size, self.seed, self.rank, self.world_size = dataset_size, seed, rank, world_size
        self.batch_size = batch_size
        self.per_rank = dataset_size // (world_size * batch_size) * batch_size  # keys per rank per epoch
        self.start = start

    def epoch_keys(self, epoch: int) -> Tensor:
        """This rank's keys of one epoch, `(per_rank,)` int64."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        perm = torch.randperm(self.dataset_size, generator=generator)[: self.per_rank * self.world_size]
        mine = perm.view(-1, self.world_size, self.batch_size)[:, self.rank].flatten()
        return mine + epoch * self.dataset_size

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            yield from self.epoch_keys(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0


def collate_clips(items: Sequence[dict]) -> dict:
    """Batch `VideoDataset` items: video `(B, 3, T, S, S)`, label and index `(B,)`, bad_files summed."""
    return {
        "video": torch.stack([item["video"] for item in items]),
        "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "bad_files": sum(item["bad_files"] for item in items),
    }
