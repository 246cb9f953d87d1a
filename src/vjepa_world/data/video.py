"""Decoding videos (and images, as one-frame videos) with PyAV, and clip preprocessing."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..files import atomic_write

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoDecodeError(Exception):
    """A file that is missing, empty, corrupt or holds no video stream."""


def find_media(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files to read: each input is a file, or a folder searched recursively for videos and images."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
            )
            if not found:
                raise ValueError(
                    f"folder {item} holds no video or image files ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                )
            files.extend(found)
        else:
            files.append(item)  # a missing file is reported (and skipped) when it is read
    return files


def _open(path: Path):
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoDecodeError(f"{path}: cannot open ({err})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: holds no video stream")
    return container


def video_info(path: str | os.PathLike) -> tuple[int, float | None]:
    """Number of frames (the container's count when it states one, else counted by demuxing) and
    the stream's average frame rate (None when the container states none), from one open."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if stream.frames > 0:
            return stream.frames, fps
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as err:
            raise VideoDecodeError(f"{path}: corrupt stream ({err})") from None
    if count == 0:
        raise VideoDecodeError(f"{path}: no frames")
    return count, fps


def video_frame_count(path: str | os.PathLike) -> int:
    """Number of frames: the container's count when it states one, else counted by demuxing."""
    return video_info(path)[0]


SEEK_AFTER = 24  # frames: a clip starting earlier is decoded from the start, later ones seek


def _numbered_frames(container, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame index, frame) from at most a keyframe before `first` onwards.

    Seeks when `first` is far into a stream with a constant rate and timestamps (index = time x
    rate, exact for constant-rate video); decodes from the start otherwise, or when a seek lands
    past `first`.
    """
    stream = container.streams.video[0]
    rate, base, origin = stream.average_rate, stream.time_base, stream.start_time or 0
    if first >= SEEK_AFTER and rate and base:
        container.seek(origin + int(first / (rate * base)), stream=stream, backward=True)
        frames = container.decode(stream)
        head = next(frames, None)
        if head is not None and head.pts is not None and round((head.pts - origin) * base * rate) <= first:
            for frame in itertools.chain([head], frames):
                yield round((frame.pts - origin) * base * rate), frame
            return
        container.seek(origin, stream=stream, backward=True)
    yield from enumerate(container.decode(stream))


def iter_clip_frames(path: str | os.PathLike, clips: Sequence[Sequence[int]]) -> Iterator[np.ndarray]:
    """Decode a file once (from a keyframe before the first frame wanted) and yield each clip's
    frames, uint8 `(len(clip), H, W, 3)` RGB.

    `clips` are lists of frame indices (any order within a clip, repeats allowed), yielded in the
    order given, which must be by increasing last index. Only frames still needed are kept, so
    long videos stream. Indices past the real end (containers may over-state their length) get
    the last frame; a stream that breaks after some frames ends there the same way.
    """
    path = Path(path)
    wanted: dict[int, int] = {}  # frame index -> clips still needing it
    for clip in clips:
        for i in set(clip):
            wanted[i] = wanted.get(i, 0) + 1
    frames: dict[int, np.ndarray] = {}
    last = None
    pending = iter(clips)
    clip = next(pending, None)
    with _open(path) as container:
        try:
            for i, frame in _numbered_frames(container, min(min(c) for c in clips)):
                last = frame
                if i in wanted:
                    frames[i] = frame.to_ndarray(format="rgb24")
                while clip is not None and max(clip) <= i:
                    yield np.stack([frames[j] for j in clip])
                    for j in set(clip):
                        wanted[j] -= 1
                        if not wanted[j]:
                            del frames[j]
                    clip = next(pending, None)
                if clip is None:
                    return
        except av.error.FFmpegError as err:
            if last is None:
                raise VideoDecodeError(f"{path}: corrupt stream ({err})") from None
    if last is None:
        raise VideoDecodeError(f"{path}: no decodable frames")
    tail = last.to_ndarray(format="rgb24")
    while clip is not None:
        yield np.stack([frames.get(j, tail) for j in clip])
        clip = next(pending, None)


def read_clip_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """The frames at `indices` of one file, uint8 `(len(indices), H, W, 3)` RGB."""
    return next(iter_clip_frames(path, [indices]))


def last_clip_start(num_frames: int, clip_len: int, frame_step: int) -> int:
    """The latest first frame of a clip that fits in the video (0 when none fits)."""
    return max(num_frames - (clip_len - 1) * frame_step - 1, 0)


def clip_window(start: int, num_frames: int, clip_len: int, frame_step: int) -> list[int]:
    """Indices of the clip starting at `start`; past the end, the last frame repeats."""
    return [min(start + frame_step * j, num_frames - 1) for j in range(clip_len)]


def clip_indices(num_frames: int, clip_len: int, frame_step: int, clips: int) -> list[list[int]]:
    """Frame indices of the clips to take from a video of `num_frames` frames.

    `clips` > 0: that many clips spread evenly over the video; 0: every non-overlapping window.
    A video shorter than one clip repeats its last frame.
    """
    room = last_clip_start(num_frames, clip_len, frame_step)
    if clips > 0:
        starts = sorted({round(room * k / (clips - 1)) if clips > 1 else room // 2 for k in range(clips)})
    else:
        starts = list(range(0, room + 1, (clip_len - 1) * frame_step + 1))
    return [clip_window(s, num_frames, clip_len, frame_step) for s in starts]


def preprocess_clip(frames: np.ndarray, size: int, view: int = 0, views: int = 1) -> Tensor:
    """uint8 `(T, H, W, 3)` -> normalised float `(3, T, size, size)`, the evaluation transform of
    V-JEPA 2: resize the short side to size * 256/224, crop `size` x `size`, ImageNet mean/std.
    With `views` > 1, `view` picks one of that many crops spread evenly along the resized frame
    (first to last position on each axis); one view is the centre crop."""
    if not 0 <= view < views:
        raise ValueError(f"view must be in [0, {views - 1}], got {view}")
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)  # (T, 3, H, W)
    height, width = video.shape[-2:]
    short = int(size * 256 / 224)
    scale = short / min(height, width)
    new_hw = (max(size, round(height * scale)), max(size, round(width * scale)))
    video = F.interpolate(video, size=new_hw, mode="bilinear", antialias=True, align_corners=False)
    where = view / (views - 1) if views > 1 else 0.5  # 0 = top/left, 1 = bottom/right
    top, left = (int((extent - size) * where) for extent in new_hw)  # centre: (extent - size) // 2
    return normalize(video[:, :, top : top + size, left : left + size])


def normalize_frames(frames: Tensor) -> Tensor:
    """uint8 RGB frames `(..., H, W, 3)` -> ImageNet-normalised float images `(..., 3, H, W)`."""
    if frames.dtype != torch.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3) RGB, got {frames.dtype} {tuple(frames.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    return (frames.movedim(-1, -3).float().div(255) - mean) / std


def normalize(video: Tensor) -> Tensor:
    """float `(T, 3, H, W)` in [0, 1] -> ImageNet-normalised `(3, T, H, W)`, the encoders' input layout."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((video - mean) / std).permute(1, 0, 2, 3).contiguous()


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float = 30, gop: int = 16, lossless: bool = False
) -> Path:
    """Encode uint8 `(T, H, W, 3)` RGB frames as an H.264 mp4 (short GOP for cheap seeks), atomically.
    `lossless`: full-resolution colour and no quantisation (yuv444p, crf 0; pixels within 2 of
    255), for training data, where codec noise would swamp small motions; else yuv420p, crf 23."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got shape {frames.shape}")
    height, width = frames.shape[1:3]

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(
                "libx264", rate=round(fps), options={"crf": "0" if lossless else "23"}
            )
            stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
            stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
            stream.codec_context.gop_size = gop
            for frame in frames:
                picture = av.VideoFrame.from_ndarray(frame[: stream.height, : stream.width], format="rgb24")
                container.mux(stream.encode(picture))
            container.mux(stream.encode())

    return atomic_write(path, encode)
