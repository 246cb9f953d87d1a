"""Trajectory data for action-conditioned world models: episodes of frames, actions and states.

Episodes are stored in the LeRobot v2 layout (one parquet file and one mp4 per episode):

    meta/info.json        codebase_version, fps, features (dtype, shape, names of each column), path templates
    meta/episodes.jsonl   {"episode_index", "tasks", "length"} per episode
    meta/tasks.jsonl      {"task_index", "task"} per task
    meta/stats.json       min, max, mean, std of each feature (what LeRobot normalises with)
    data/chunk-000/episode_000000.parquet                     one row per frame
    videos/chunk-000/observation.image/episode_000000.mp4     one frame per row

Episode e lives in chunk e // 1000. `SequenceDataset` cuts episodes into fixed-length windows for
training; `encode_episodes` caches a frozen encoder's features of every frame so training can skip
decoding and encoding.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..files import atomic_write, write_json, write_jsonl
from .video import VideoDecodeError, iter_clip_frames, read_clip_frames, video_info, write_video

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v2.0"
CHUNKS_SIZE = 1000
IMAGE_KEY = "observation.image"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
VIDEO_GOP = 8  # frames between keyframes: windows starting mid-episode seek close to their first frame


@dataclass
class Episode:
    """One trajectory of T steps, row t = what was observed at step t and the action taken there
    (the LeRobot convention: `next.reward` and `next.done` are the outcome of `actions[t]`)."""

    frames: np.ndarray  # (T, H, W, 3) uint8, observation.image
    actions: np.ndarray  # (T, A) float32
    states: np.ndarray  # (T, S) float32, observation.state
    rewards: np.ndarray  # (T,) float32, next.reward
    dones: np.ndarray  # (T,) bool, next.done
    fps: float = 10.0
    task: str = ""

    def __len__(self) -> int:
        return len(self.actions)


# ---------------------------------------------------------------------------- small file helpers


def _write_parquet(path: Path, table: pa.Table) -> Path:
    return atomic_write(path, lambda tmp: pq.write_table(table, str(tmp)))


def _read_json(path: Path, what: str) -> Any:
    """A JSON file's content; missing or malformed files raise a one-line error naming them."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): rewrite the dataset") from None


def _read_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what}")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not valid JSON lines ({err}): rewrite the dataset") from None


# ---------------------------------------------------------------------------- writing


def _check_episode(episode: Episode, number: int) -> None:
    """Check dtypes, shapes and one row per step in every array, so a bad episode fails before any write."""
    frames, steps = np.asarray(episode.frames), len(episode.actions)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"episode {number}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(
            f"episode {number}: frames are {frames.shape[1]}x{frames.shape[2]}, H.264 needs even "
            "sizes: crop or pad them by one pixel"
        )
    if steps == 0:
        raise ValueError(f"episode {number} is empty: drop it before writing")
    if np.ndim(episode.actions) != 2 or np.ndim(episode.states) != 2:
        raise ValueError(
            f"episode {number}: actions and states must be 2-d (T, A) and (T, S), got shapes "
            f"{np.shape(episode.actions)} and {np.shape(episode.states)}"
        )
    lengths = {
        "frames": len(frames),
        "states": len(episode.states),
        "rewards": len(episode.rewards),
        "dones": len(episode.dones),
    }
    if any(n != steps for n in lengths.values()):
        raise ValueError(
            f"episode {number}: every array needs one row per step, got actions {steps} and {lengths}"
        )


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(T, K) float32 -> a parquet column of T fixed-size lists of K float32 (HF `Sequence(length=K)`)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _episode_table(episode: Episode, episode_index: int, first: int, task_index: int, fps: float) -> pa.Table:
    """The parquet rows of one episode; `first` is the global index of its first frame."""
    steps = len(episode)
    frame_index = np.arange(steps, dtype=np.int64)
    states = (
        {STATE_KEY: _fixed_list(episode.states)} if np.shape(episode.states)[1] else {}
    )  # none: no column
    columns = {
        **states,
        ACTION_KEY: _fixed_list(episode.actions),
        "next.reward": pa.array(np.asarray(episode.rewards, dtype=np.float32).reshape(steps)),
        "next.done": pa.array(np.asarray(episode.dones, dtype=bool).reshape(steps)),
        "timestamp": pa.array((frame_index / fps).astype(np.float32)),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.full(steps, episode_index, dtype=np.int64)),
        "index": pa.array(first + frame_index),
        "task_index": pa.array(np.full(steps, task_index, dtype=np.int64)),
    }
    return pa.table(columns)


def _features(height: int, width: int, state_dim: int, action_dim: int, fps: float) -> dict:
    """info.json's `features`: dtype, shape and names of each column (and of the video)."""
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}
    video_info = {
        "video.fps": fps,
        "video.codec": "h264",
        "video.pix_fmt": "yuv444p",  # lossless (write_video lossless=True)
        "video.is_depth_map": False,
        "has_audio": False,
    }
    state = {"dtype": "float32", "shape": [state_dim], "names": [f"state_{i}" for i in range(state_dim)]}
    return {
        IMAGE_KEY: {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channel"],
            "video_info": video_info,
        },
        **({STATE_KEY: state} if state_dim else {}),  # an environment without info["state"]: no feature
        ACTION_KEY: {
            "dtype": "float32",
            "shape": [action_dim],
            "names": [f"action_{i}" for i in range(action_dim)],
        },
        "next.reward": scalar("float32"),
        "next.done": scalar("bool"),
        "timestamp": scalar("float32"),
        **{name: scalar("int64") for name in ("frame_index", "episode_index", "index", "task_index")},
    }


_STATS_COLUMNS = (
    STATE_KEY,
    ACTION_KEY,
    "next.reward",
    "next.done",
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
)


class _RunningStats:
    """Count, sum, sum of squares, min and max per column dimension, accumulated episode by episode."""

    def __init__(self) -> None:
        self.count, self.sum, self.sumsq, self.min, self.max = 0, 0.0, 0.0, None, None

    def update(self, values: np.ndarray) -> None:  # values (T, K)
        values = values.astype(np.float64)
        self.count += len(values)
        self.sum = self.sum + values.sum(0)
        self.sumsq = self.sumsq + np.square(values).sum(0)
        low, high = values.min(0), values.max(0)
        self.min = low if self.min is None else np.minimum(self.min, low)
        self.max = high if self.max is None else np.maximum(self.max, high)

    def result(self) -> dict[str, list]:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean**2, 0.0))
        return {
            name: value.tolist()
            for name, value in (("min", self.min), ("max", self.max), ("mean", mean), ("std", std))
        }


def _pixel_histogram(frames: np.ndarray) -> np.ndarray:
    """How often each value 0..255 occurs per channel, (3, 256): exact pixel statistics at uint8 cost."""
    return np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)])


def _image_stats(histogram: np.ndarray) -> dict[str, list]:
    """Per-channel min, max, mean, std of pixels in [0, 1], shaped (3, 1, 1) as LeRobot stores them."""
    values = np.arange(256) / 255.0
    count = histogram.sum(1)
    mean = histogram @ values / count
    std = np.sqrt(np.maximum(histogram @ values**2 / count - mean**2, 0.0))
    low = np.array([values[np.flatnonzero(h)[0]] for h in histogram])
    high = np.array([values[np.flatnonzero(h)[-1]] for h in histogram])
    shaped = lambda x: x.reshape(3, 1, 1).tolist()
    return {"min": shaped(low), "max": shaped(high), "mean": shaped(mean), "std": shaped(std)}


def _info(fps: float, robot_type: str, episodes: int, frames: int, tasks: int, features: dict) -> dict:
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": episodes,
        "total_frames": frames,
        "total_tasks": tasks,
        "total_videos": episodes,  # one camera
        "total_chunks": -(-episodes // CHUNKS_SIZE),
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


def _clean_fps(fps: float) -> float | int:
    """An integral rate as an int (how LeRobot writes it); a positive number either way."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return int(fps) if float(fps).is_integer() else float(fps)


def _write_episode(
    out: Path, episode: Episode, number: int, first: int, task_index: int, fps: float
) -> pa.Table:
    """Write one episode's parquet and mp4; return its rows (for the statistics)."""
    table = _episode_table(episode, number, first, task_index, fps)
    chunk = number // CHUNKS_SIZE
    _write_parquet(out / DATA_PATH.format(episode_chunk=chunk, episode_index=number), table)
    video = VIDEO_PATH.format(episode_chunk=chunk, video_key=IMAGE_KEY, episode_index=number)
    write_video(out / video, episode.frames, fps=fps, gop=VIDEO_GOP, lossless=True)
    return table


def write_lerobot_dataset(
    out_dir: str | os.PathLike,
    episodes: Iterable[Episode],
    *,
    fps: float | None = None,
    robot_type: str = "sim",
    progress: bool = True,
    append: bool = False,
) -> Path:
    """Write `episodes` as a LeRobot v2.0 dataset in `out_dir` and return it.

    Streams: each episode is written (its parquet, then its mp4) as it arrives, so a generator of
    episodes never sits in memory at once. `fps=None` takes the episodes' own rate and requires them
    to agree; a given `fps` overrides every episode's. The first episode fixes the frame size and the
    state and action widths. `meta/info.json` is removed first and written last, so an interrupted
    write is not mistaken for a dataset. With `append`, the episodes are added after those of the
    dataset already in `out_dir` (whose files are reread for the statistics).
    """
    out = Path(out_dir)
    existing = LeRobotDataset(out) if append else None
    (out / "meta" / "info.json").unlink(missing_ok=True)
    rate = None if fps is None else _clean_fps(fps)
    tasks: dict[str, int] = {}  # task -> task_index, in order of first appearance
    rows: list[dict] = []  # meta/episodes.jsonl
    total = 0  # frames written so far = global index of the next episode's first frame
    stats = {name: _RunningStats() for name in _STATS_COLUMNS}
    histogram, shape = np.zeros((3, 256), dtype=np.int64), None
    if existing is not None:
        rate = rate if rate is not None else _clean_fps(existing.fps)
        for index in existing.episode_indices:
            old = existing.read_episode(index)
            table = pq.read_table(existing.data_path(index))
            for name, accumulator in stats.items():
                if name in table.column_names:
                    accumulator.update(_column(table, name, "episode table"))
            histogram += _pixel_histogram(old.frames)
            tasks.setdefault(old.task, len(tasks))
            rows.append({"episode_index": index, "tasks": [old.task], "length": len(old)})
            total += len(old)
            shape = (old.frames.shape[1:3], old.states.shape[1], old.actions.shape[1])
    first_number = max(existing.episode_indices) + 1 if existing is not None else 0
    for number, episode in enumerate(
        tqdm(episodes, desc="write episodes", unit="episode", disable=not progress), start=first_number
    ):
        _check_episode(episode, number)
        if rate is None:
            rate = _clean_fps(episode.fps)
        elif fps is None and episode.fps != rate:
            raise ValueError(
                f"episode {number} runs at {episode.fps} fps but the first at {rate}: pass fps= "
                "to write them all at one rate"
            )
        dims = (np.shape(episode.frames)[1:3], np.shape(episode.states)[1], np.shape(episode.actions)[1])
        if shape is not None and dims != shape:
            raise ValueError(
                f"episode {number} has (frame size, state, action) widths {dims} but the first has "
                f"{shape}: every episode of a dataset needs the same"
            )
        shape = dims
        task_index = tasks.setdefault(episode.task, len(tasks))
        table = _write_episode(out, episode, number, total, task_index, rate)
        for name, accumulator in stats.items():
            if name in table.column_names:
                accumulator.update(_column(table, name, "episode table"))
        histogram += _pixel_histogram(np.asarray(episode.frames))
        rows.append({"episode_index": number, "tasks": [episode.task], "length": len(episode)})
        total += len(episode)
    if not rows:
        raise ValueError("no episodes to write: pass at least one Episode")
    (height, width), state_dim, action_dim = shape
    features = _features(height, width, state_dim, action_dim, rate)
    write_jsonl(out / "meta" / "tasks.jsonl", ({"task_index": i, "task": t} for t, i in tasks.items()))
    write_jsonl(out / "meta" / "episodes.jsonl", rows)
    stats_json = {
        IMAGE_KEY: _image_stats(histogram),
        **{name: s.result() for name, s in stats.items() if name in features},
    }
    write_json(out / "meta" / "stats.json", stats_json)
    write_json(out / "meta" / "info.json", _info(rate, robot_type, len(rows), total, len(tasks), features))
    return out


# ---------------------------------------------------------------------------- reading


def _column(table: pa.Table, name: str, source: Any) -> np.ndarray:
    """A column as a numpy array (rows, K): lists (fixed or variable size) are stacked, scalars get K = 1."""
    column = table.column(name).combine_chunks()
    rows = len(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        widths = pc.unique(pc.list_value_length(column)).to_pylist()
        if len(widths) > 1:
            raise ValueError(
                f"{source}: column {name!r} holds lists of lengths {sorted(widths)}: every row of a "
                "feature needs the same width"
            )
        return column.flatten().to_numpy(zero_copy_only=False).reshape(rows, widths[0] if widths else 0)
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(rows, column.type.list_size)
    return column.to_numpy(zero_copy_only=False).reshape(rows, 1)


def _pick_image_key(features: dict, image_key: str | None, source: Path) -> str:
    """The video feature to read: `image_key`, else "observation.image", else the first video feature."""
    videos = [name for name, feature in features.items() if feature.get("dtype") == "video"]
    if image_key is not None:
        if image_key not in videos:
            raise ValueError(
                f"image_key={image_key!r} is not a video feature of {source} (video features: "
                f"{videos}): pass one of them"
            )
        return image_key
    if not videos:
        raise ValueError(
            f"{source} lists no feature of dtype 'video': only datasets that store frames as "
            "videos can be read"
        )
    return IMAGE_KEY if IMAGE_KEY in videos else videos[0]


def _check_key(features: dict, key: str | None, argument: str, source: Path, optional: bool) -> str | None:
    """`key` when it names a feature (or is None and may be); else a one-line error listing the features."""
    if key is None and optional:
        return None
    if key not in features:
        fallback = ", or None for none" if optional else ""
        raise ValueError(
            f"{argument}={key!r} is not a feature of {source} (features: {', '.join(features)}): "
            f"pass {argument}= one of them{fallback}"
        )
    return key


def _read_info(root: Path) -> dict:
    """meta/info.json of a LeRobot v2.x dataset, with the fields reading needs checked."""
    path = root / "meta" / "info.json"
    info = _read_json(path, f"{root} is not a LeRobot v2 dataset (write one with write_lerobot_dataset)")
    version = str(info.get("codebase_version", "")) if isinstance(info, dict) else ""
    if not version.startswith("v2"):
        raise ValueError(
            f"{path}: codebase_version {version or 'missing'} is not supported (only v2.x, one "
            "parquet and one video per episode): convert the dataset to v2.1 with LeRobot"
        )
    missing = [k for k in ("fps", "features", "data_path", "video_path") if k not in info]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: rewrite the dataset's meta/info.json")
    return info


class LeRobotDataset:
    """Metadata of a local dataset in the LeRobot v2 layout (ours or LeRobot's), and per-episode reads.

    `image_key` picks the camera (default "observation.image", else the first video feature);
    `state_key` may be None for datasets without states (states are then `(T, 0)`). Missing
    `next.reward` / `next.done` columns read as zeros / False. Episodes are named by their
    `episode_index` in meta/episodes.jsonl.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        *,
        image_key: str | None = None,
        state_key: str | None = STATE_KEY,
        action_key: str = ACTION_KEY,
    ) -> None:
        self.root = Path(dataset_dir)
        self.info = _read_info(self.root)
        info_path = self.root / "meta" / "info.json"
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        self.image_key = _pick_image_key(self.features, image_key, info_path)
        self.state_key = _check_key(self.features, state_key, "state_key", info_path, optional=True)
        self.action_key = _check_key(self.features, action_key, "action_key", info_path, optional=False)
        self.chunks_size = int(self.info.get("chunks_size", CHUNKS_SIZE))
        rows = _read_jsonl(self.root / "meta" / "episodes.jsonl", "the dataset lists no episodes: rewrite it")
        try:
            self.lengths = {int(row["episode_index"]): int(row["length"]) for row in rows}
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{self.root / 'meta' / 'episodes.jsonl'}: every line needs an integer "
                "episode_index and length: rewrite the dataset"
            ) from None
        self.tasks = {int(row["episode_index"]): list(row.get("tasks") or []) for row in rows}

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def episode_indices(self) -> list[int]:
        return list(self.lengths)

    def length(self, episode_index: int) -> int:
        """Number of frames (rows) of an episode, from meta/episodes.jsonl."""
        if episode_index not in self.lengths:
            raise IndexError(
                f"episode {episode_index} is not in {self.root} (it has {len(self)} episodes, "
                f"indices {min(self.lengths, default=None)}..{max(self.lengths, default=None)})"
            )
        return self.lengths[episode_index]

    def data_path(self, episode_index: int) -> Path:
        chunk = episode_index // self.chunks_size
        return self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=episode_index)

    def video_path(self, episode_index: int) -> Path:
        chunk = episode_index // self.chunks_size
        relative = self.info["video_path"].format(
            episode_chunk=chunk, video_key=self.image_key, episode_index=episode_index
        )
        return self.root / relative

    def check_files(self, episode_index: int) -> None:
        """Raise a one-line FileNotFoundError if the episode's parquet or video file is missing."""
        for path, kind in (
            (self.data_path(episode_index), "parquet"),
            (self.video_path(episode_index), "video"),
        ):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: the {kind} file of episode {episode_index} is "
                    f"missing; restore it or drop the episode from meta/episodes.jsonl"
                )

    def read_rows(self, episode_index: int) -> dict[str, np.ndarray]:
        """The episode's parquet columns: actions (T, A) float32, states (T, S) float32, rewards (T,)
        float32 and dones (T,) bool."""
        self.check_files(episode_index)
        path, length = self.data_path(episode_index), self.length(episode_index)
        wanted = [c for c in (self.action_key, self.state_key, "next.reward", "next.done") if c is not None]
        with pq.ParquetFile(path) as handle:
            present = set(handle.schema_arrow.names)
            table = handle.read(columns=[c for c in wanted if c in present])
        for name in (self.action_key, self.state_key):
            if name is not None and name not in present:
                raise ValueError(
                    f"{path} has no column {name!r} (columns: {', '.join(sorted(present))}): pass "
                    "the right state_key / action_key"
                )
        if table.num_rows != length:
            raise ValueError(
                f"{path} holds {table.num_rows} rows but meta/episodes.jsonl says {length}: the "
                "dataset is inconsistent, rewrite it"
            )

        def read(key: str | None, dtype, width: int) -> np.ndarray:  # (T, K); zeros of (T, width) if absent
            if key in present:
                return _column(table, key, path).astype(dtype)
            return np.zeros((length, width), dtype)

        return {
            "actions": read(self.action_key, np.float32, 0),
            "states": read(self.state_key, np.float32, 0),  # (T, 0) without a state_key
            "rewards": read("next.reward", np.float32, 1)[:, 0],
            "dones": read("next.done", bool, 1)[:, 0],
        }

    def check_video(self, episode_index: int) -> Path:
        """The episode's video, after checking it has a frame for every row (ValueError if not)."""
        self.check_files(episode_index)
        path, length = self.video_path(episode_index), self.length(episode_index)
        try:
            frames, _ = video_info(path)
        except VideoDecodeError as err:
            raise ValueError(f"{err}: re-encode or restore the video of episode {episode_index}") from None
        if frames < length:
            raise ValueError(
                f"{path} has {frames} frames but episode {episode_index} has {length} rows: "
                "re-encode the video with one frame per row"
            )
        return path

    def read_frames(self, episode_index: int, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` (row numbers) of an episode's video, uint8 (len(indices), H, W, 3), one decode."""
        return read_clip_frames(self.check_video(episode_index), indices)

    def read_episode(self, episode_index: int) -> Episode:
        """A whole episode: every frame decoded, every column read."""
        rows = self.read_rows(episode_index)
        frames = self.read_frames(episode_index, range(self.length(episode_index)))
        tasks = self.tasks.get(episode_index) or [""]
        return Episode(frames=frames, **rows, fps=self.fps, task=tasks[0])


def read_episode(dataset_dir: str | os.PathLike, index: int, **keys: str | None) -> Episode:
    """Episode `index` of a LeRobot v2 dataset; `keys` are LeRobotDataset's image/state/action_key."""
    return LeRobotDataset(dataset_dir, **keys).read_episode(index)


# ---------------------------------------------------------------------------- feature cache


def _slug(key: str) -> str:
    """A folder name for an encoder key: readable, and unique by a hash of the exact key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:64]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class FeatureCache:
    """Encoder features of every frame of a dataset, one safetensors file per episode:
    `{directory}/{slug of key}/episode_XXXXXX.safetensors`, tensor "features" (T, N, D), with the key,
    the episode length and its video's size in the metadata (a mismatch means re-encode)."""

    directory: Path
    key: str

    def path(self, episode_index: int) -> Path:
        return Path(self.directory) / _slug(self.key) / f"episode_{episode_index:06d}.safetensors"

    def fingerprint(self, dataset: LeRobotDataset, episode_index: int) -> dict[str, str]:
        """What a cached file must have been made from: this key, the episode's length and video."""
        video = dataset.video_path(episode_index)
        return {
            "key": self.key,
            "length": str(dataset.length(episode_index)),
            "video_bytes": str(video.stat().st_size if video.is_file() else -1),
        }

    def is_cached(self, dataset: LeRobotDataset, episode_index: int) -> bool:
        path = self.path(episode_index)
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception:  # a corrupt file is simply not a cache hit
            return False
        return all(metadata.get(k) == v for k, v in self.fingerprint(dataset, episode_index).items())

    def read(self, episode_index: int, rows: slice) -> Tensor:
        """Features of rows `rows` (a slice, step allowed) of an episode, (len(rows), N, D)."""
        with safe_open(str(self.path(episode_index)), framework="pt") as handle:
            return handle.get_slice("features")[rows]


def _encode_episode(
    dataset: LeRobotDataset, episode_index: int, encode_fn, batch_size: int, pairs: bool, bar
) -> Tensor:
    """encode_fn over every frame of one episode, decoded once in batches; (T, N, D) on the CPU.
    With `pairs`, encode_fn(frames, previous) also gets each frame's predecessor (the first its own)."""
    video, length = dataset.check_video(episode_index), dataset.length(episode_index)
    batches = [list(range(i, min(i + batch_size, length))) for i in range(0, length, batch_size)]
    if pairs:  # each batch led by the frame before its first
        batches = [[max(rows[0] - 1, 0), *rows] for rows in batches]
    outputs = []
    for frames in iter_clip_frames(video, batches):  # frames (B, H, W, 3) uint8 (B + 1 with pairs)
        frames = torch.from_numpy(frames)
        out = encode_fn(frames[1:], frames[:-1]) if pairs else encode_fn(frames)
        count = len(frames) - pairs
        if not isinstance(out, Tensor) or out.ndim != 3 or len(out) != count:
            raise ValueError(
                f"encode_fn must map uint8 frames (B, H, W, 3) to a tensor (B, N, D), got "
                f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))} for B = {count}"
            )
        outputs.append(out.detach().cpu())
        bar.update(count)
    return torch.cat(outputs).contiguous()


@torch.inference_mode()
def encode_episodes(
    dataset_dir: str | os.PathLike,
    encode_fn: Callable[[Tensor], Tensor],
    cache_path: str | os.PathLike,
    *,
    key: str,
    batch_size: int = 64,
    image_key: str | None = None,
    pairs: bool = False,
    progress: bool = True,
) -> FeatureCache:
    """Encode every frame of every episode once and cache the features under `cache_path`.

    `encode_fn` maps uint8 RGB frames `(B, H, W, 3)` (CPU) to features `(B, N, D)` (any device and
    dtype; stored as returned, on the CPU); it does its own resizing, normalising and device moves.
    `key` names the encoder: change it whenever encode_fn's output would change (weights, image
    size, ...), so features of another encoder are never reused. Episodes already cached under the
    same key (same length and video) are skipped; each file is written atomically. With `pairs`,
    `encode_fn(frames, previous)` also receives each frame's predecessor in its episode (the
    episode's first frame is its own), for encoders that see motion.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = LeRobotDataset(dataset_dir, image_key=image_key, state_key=None)
    cache = FeatureCache(Path(cache_path), key)
    todo = [e for e in dataset.episode_indices if not cache.is_cached(dataset, e)]
    total = sum(dataset.length(e) for e in todo)
    with tqdm(total=total, desc=f"encode {dataset.root.name}", unit="frame", disable=not progress) as bar:
        for episode_index in todo:
            features = _encode_episode(dataset, episode_index, encode_fn, batch_size, pairs, bar)
            metadata = cache.fingerprint(dataset, episode_index)
            atomic_write(
                cache.path(episode_index),
                lambda tmp, f=features, m=metadata: save_file({"features": f}, str(tmp), m),
            )
    return cache


# ---------------------------------------------------------------------------- training windows


def _resize(frames: Tensor, size: int | tuple[int, int]) -> Tensor:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3), bilinear with antialiasing; an int is a square side."""
    height, width = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (height, width):
        return frames
    images = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    images = F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return images.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class SequenceDataset(Dataset):
    """Every window of `sequence_length` frames, one every `frame_skip` rows, within one episode.

    A window starting at row s covers rows s .. s + sequence_length * frame_skip - 1 and samples
    frames at rows s + t * frame_skip. Item (T = sequence_length, k = frame_skip):

    - frames (T, H, W, 3) uint8 (resized to `image_size` if given), or features (T, N, D) when
      `features` is a FeatureCache from `encode_episodes`;
    - actions (T, k * A) float32: for frame t, the raw actions of rows s + t*k .. s + t*k + k - 1
      concatenated in order (everything done between sampled frames t and t + 1; with k = 1 just
      the action), so no assumption is made about how actions compose;
    - states (T, S) float32 at the sampled rows; rewards (T,) float32 summed over the same k rows;
      dones (T,) bool, any over them; episode and start (s) as ints.

    Episodes shorter than a window are skipped (listed in `skipped`, one warning); if none is long
    enough, construction fails. `episodes` restricts to some episode indices (e.g. a split). The
    columns and cached features of the last `keep_episodes` episodes read stay in memory, so
    training on features does not reread files for every window.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        sequence_length: int,
        frame_skip: int = 1,
        image_size: int | tuple[int, int] | None = None,
        *,
        features: FeatureCache | None = None,
        episodes: Sequence[int] | None = None,
        image_key: str | None = None,
        state_key: str | None = STATE_KEY,
        action_key: str = ACTION_KEY,
        keep_episodes: int = 256,
        previous: bool = False,
    ) -> None:
        if sequence_length < 1 or frame_skip < 1:
            raise ValueError(
                f"sequence_length and frame_skip must be >= 1, got {sequence_length} and {frame_skip}"
            )
        if features is not None and image_size is not None:
            raise ValueError(
                "image_size resizes frames, but with features= items hold cached features: drop one"
            )
        if previous and features is None:
            raise ValueError("previous= reads the cached features of earlier rows: pass features= too")
        self.meta = LeRobotDataset(
            dataset_dir, image_key=image_key, state_key=state_key, action_key=action_key
        )
        self.sequence_length, self.frame_skip, self.image_size = sequence_length, frame_skip, image_size
        self.features, self.previous = features, previous
        self._rows = functools.lru_cache(maxsize=keep_episodes)(self.meta.read_rows)
        if features is not None:
            self._features = functools.lru_cache(maxsize=keep_episodes)(
                lambda episode: features.read(episode, slice(None))  # (T_episode, N, D)
            )
        self.span = sequence_length * frame_skip  # rows one window covers
        chosen = self.meta.episode_indices if episodes is None else [int(e) for e in episodes]
        usable = [e for e in chosen if self.meta.length(e) >= self.span]
        self.skipped = [e for e in chosen if self.meta.length(e) < self.span]
        self._check_usable(usable, chosen)
        self._episodes = np.array(usable, dtype=np.int64)
        counts = np.array([self.meta.length(e) - self.span + 1 for e in usable], dtype=np.int64)
        self._ends = np.cumsum(counts)  # windows before the end of each episode

    def _check_usable(self, usable: list[int], chosen: list[int]) -> None:
        """Fail when no episode holds a window; warn about the skipped ones; check files and cache."""
        if not usable:
            longest = max((self.meta.length(e) for e in chosen), default=0)
            raise ValueError(
                f"no episode of {self.meta.root} has the {self.span} rows a window of "
                f"sequence_length={self.sequence_length} with frame_skip={self.frame_skip} needs "
                f"(longest: {longest}): lower sequence_length or frame_skip"
            )
        if self.skipped:
            log.warning(
                "skipping %d of %d episodes of %s shorter than a window of %d rows",
                len(self.skipped),
                len(chosen),
                self.meta.root,
                self.span,
            )
        for episode_index in usable:
            self.meta.check_files(episode_index)
            if self.features is not None and not self.features.is_cached(self.meta, episode_index):
                raise FileNotFoundError(
                    f"{self.features.path(episode_index)}: no features of episode "
                    f"{episode_index} for key {self.features.key!r}: run encode_episodes "
                    "on this dataset with this key first"
                )

    def __len__(self) -> int:
        return int(self._ends[-1])

    @property
    def episodes(self) -> list[int]:
        """The episode indices that hold at least one window."""
        return self._episodes.tolist()

    def window(self, index: int) -> tuple[int, int]:
        """(episode index, start row) of window `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        position = int(np.searchsorted(self._ends, index, side="right"))
        before = int(self._ends[position - 1]) if position else 0
        return int(self._episodes[position]), index - before

    def __getitem__(self, index: int) -> dict:
        episode, start = self.window(index)
        steps, skip = self.sequence_length, self.frame_skip
        rows = self._rows(episode)
        group = slice(start, start + self.span)  # rows of the window, (T * k) of them
        sampled = slice(start, start + self.span, skip)  # the T sampled rows
        item = {
            "actions": torch.from_numpy(rows["actions"][group].reshape(steps, -1)),  # (T, k * A)
            "states": torch.from_numpy(rows["states"][sampled]),  # (T, S)
            "rewards": torch.from_numpy(rows["rewards"][group].reshape(steps, skip).sum(1)),  # (T,)
            "dones": torch.from_numpy(rows["dones"][group].reshape(steps, skip).any(1)),  # (T,)
            "episode": episode,
            "start": start,
        }
        if self.features is not None:
            item["features"] = self._features(episode)[sampled]  # (T, N, D)
            if self.previous:  # the row before each sampled one (the episode's first: itself)
                before = np.maximum(np.arange(start, start + self.span, skip) - 1, 0)
                item["previous_features"] = self._features(episode)[before]  # (T, N, D)
        else:
            frames = torch.from_numpy(self.meta.read_frames(episode, range(start, start + self.span, skip)))
            item["frames"] = frames if self.image_size is None else _resize(frames, self.image_size)
        return item
