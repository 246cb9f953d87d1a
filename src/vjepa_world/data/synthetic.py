"""A built-in temporal-reasoning video dataset: coloured objects bouncing in a box, rendered with numpy.

Each clip shows 2 or 3 objects (squares or discs) moving at constant velocity inside a box drawn as a
light border, reflecting off its walls; objects do not interact and pass over each other (drawn in a
random but fixed depth order). Object A is always red and object B always blue; an optional third
object has another colour. Every label is computed exactly from the simulated trajectories and
needs time to infer (no single frame gives it):

- `direction` (8 classes): heading of A at the start of the clip, i.e. its initial velocity,
  binned to the nearest multiple of 45 degrees on screen ("right", "up_right", ... counterclockwise).
  Headings are drawn within 15 degrees of a bin centre, so no clip is near a bin edge.
- `speed` (2 classes): distance A travels over the clip, `speed * (frames - 1) / size`, below or
  above `SPEED_SPLIT`; drawn from `SPEED_RANGES` (0.2-0.3 and 0.6-0.8 frame widths), well apart.
- `first_event` (2 classes): which of A and B bounces off a wall first, by the first frame that
  shows the bounce (`ceil` of the exact contact time). Clips where neither bounces, or both in the
  same frame, are resampled. A clip where A never bounces is always "B".
- `bounces` (3 classes): wall bounces of A within the clip (each axis reflection counts, so a
  corner hit is 2), clipped to 0, 1, 2+.

Sampling draws each target class uniformly (first_event "A" with p=3/4 when A bounces, so the
two classes are even overall) and rejection-samples start positions to match, so classes are
balanced. Everything comes from a `numpy.random.Generator`, so a seed gives the same clip anywhere.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..files import write_json, write_text
from .video import write_video

TASKS: dict[str, list[str]] = {
    "direction": ["right", "up_right", "up", "up_left", "left", "down_left", "down", "down_right"],
    "speed": ["slow", "fast"],
    "first_event": ["A", "B"],
    "bounces": ["0", "1", "2+"],
}
SPLITS = ("train", "val")
VERSION = 1  # bump when the generator changes, so cached datasets are rebuilt

SPEED_RANGES = ((0.2, 0.3), (0.6, 0.8))  # slow, fast: path over the clip in frame widths
SPEED_SPLIT = 0.45  # path (frame widths) separating slow from fast
HEADING_JITTER = math.radians(15)  # headings stay this close to a 45-degree bin centre
RADIUS_RANGE = (0.07, 0.1)  # object half-size, in frame widths
CANDIDATES = 64  # start positions tried at once when rejection-sampling a trajectory
ATTEMPTS = 50  # velocity draws per target before giving up on it

COLOUR_A, COLOUR_B = (230, 40, 40), (40, 90, 235)
DISTRACTOR_COLOURS = ((230, 200, 40), (50, 190, 80), (200, 60, 200), (40, 200, 210))


@dataclass
class MovingObject:
    """One object: start centre `(x, y)` and velocity in pixels (per frame), half-size, look."""

    start: np.ndarray  # (2,) x, y
    velocity: np.ndarray  # (2,) pixels per frame, y pointing down
    radius: float
    shape: str  # "square" or "disc"
    colour: tuple[int, int, int]


@dataclass
class Scene:
    """Everything needed to render a clip: background (with walls), objects A, B (and a distractor)
    and the order they are drawn in (back to front)."""

    background: np.ndarray  # (H, W, 3) float
    objects: list[MovingObject]
    order: list[int]


# ------------------------------------------------------------------------------ geometry


def wall_margin(size: int) -> int:
    """Width of the wall border: size/16, what the evaluation centre crop (224/256) cuts off, so a
    centre-cropped clip still shows the whole box."""
    return max(1, size // 16)


def centre_bounds(radius: float | np.ndarray, size: int) -> tuple:
    """`(lo, hi)`: the range of an object's centre (either axis) that keeps it inside the walls."""
    margin = wall_margin(size)
    return margin + radius, size - margin - radius


def fold(unfolded: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Positions and wall-hit counts of free motion `unfolded` (starting in `[lo, hi)`) reflected
    between walls at `lo` and `hi`: a triangle wave, exact for any number of bounces."""
    span = hi - lo
    turns = np.floor((unfolded - lo) / span)  # walls crossed, signed
    offset = (unfolded - lo) - turns * span  # in [0, span)
    position = np.where(turns % 2 == 0, lo + offset, hi - offset)
    return position, np.abs(turns).astype(np.int64)


def simulate(start, velocity, radius, size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres at frames `0..frames-1`, `(..., T, 2)`, and wall hits within the clip, `(...,)`
    (summed over both axes), of objects starting at `start (..., 2)` with `velocity (..., 2)`."""
    start, velocity = np.asarray(start, dtype=float), np.asarray(velocity, dtype=float)
    lo, hi = centre_bounds(np.asarray(radius, dtype=float)[..., None, None], size)  # (..., 1, 1)
    t = np.arange(frames, dtype=float)[:, None]  # (T, 1)
    unfolded = start[..., None, :] + t * velocity[..., None, :]  # (..., T, 2)
    positions, turns = fold(unfolded, lo, hi)
    return positions, turns[..., -1, :].sum(-1)


def first_hit_time(start, velocity, radius, size: int) -> np.ndarray:
    """Exact time (in frames) of an object's first wall contact, `inf` if it never moves towards
    one; `start, velocity (..., 2)` -> `(...)`."""
    start, velocity = np.asarray(start, dtype=float), np.asarray(velocity, dtype=float)
    lo, hi = centre_bounds(np.asarray(radius, dtype=float)[..., None], size)
    gap = np.where(velocity > 0, hi - start, start - lo)  # distance to the wall ahead, per axis
    speed = np.abs(velocity)
    times = np.divide(gap, speed, out=np.full(np.broadcast(gap, speed).shape, np.inf), where=speed > 0)
    return times.min(-1)


# ------------------------------------------------------------------------------ labels


def direction_class(velocity) -> int:
    """Index in `TASKS["direction"]` of a velocity `(vx, vy)` (y down): nearest 45-degree heading,
    counterclockwise on screen from 0 = right."""
    vx, vy = (float(v) for v in velocity)
    if vx == 0 and vy == 0:
        raise ValueError("velocity (0, 0) has no direction")
    return round(math.atan2(-vy, vx) / (math.pi / 4)) % 8


def speed_class(speed: float, size: int, frames: int) -> int:
    """0 (slow) or 1 (fast): whether the path over the clip, in frame widths, exceeds `SPEED_SPLIT`."""
    return int(speed * (frames - 1) / size > SPEED_SPLIT)


def bounce_class(hits):
    """Wall hits clipped to the classes 0, 1, 2+ (works on arrays too)."""
    return np.minimum(hits, 2)


def first_event_class(time_a: float, time_b: float, frames: int) -> int | None:
    """0 if A's first wall contact shows in an earlier frame than B's, 1 if B's does; None when
    neither happens within the clip or both show first in the same frame (such clips are resampled).
    A contact at time `t` first shows in frame `ceil(t)`."""
    shown = [math.ceil(t) if t <= frames - 1 else math.inf for t in (time_a, time_b)]
    if shown[0] == shown[1]:
        return None
    return int(shown[1] < shown[0])


def scene_labels(scene: Scene, frames: int, size: int) -> dict[str, int]:
    """The four labels of a scene, from objects A (`objects[0]`) and B (`objects[1]`)."""
    a, b = scene.objects[:2]
    _, hits = simulate(a.start, a.velocity, a.radius, size, frames)
    event = first_event_class(
        float(first_hit_time(a.start, a.velocity, a.radius, size)),
        float(first_hit_time(b.start, b.velocity, b.radius, size)),
        frames,
    )
    if event is None:
        raise ValueError("scene has no first_event label: neither A nor B bounces first within the clip")
    return {
        "direction": direction_class(a.velocity),
        "speed": speed_class(float(np.hypot(*a.velocity)), size, frames),
        "first_event": event,
        "bounces": int(bounce_class(hits)),
    }


# ------------------------------------------------------------------------------ sampling


def _velocity(angle: float, path: float, size: int, frames: int) -> np.ndarray:
    """Velocity `(vx, vy)` (y down) for a screen heading `angle` and a path of `path` frame widths."""
    speed = path * size / (frames - 1)
    return np.array([speed * math.cos(angle), -speed * math.sin(angle)])


def _find_start(rng, velocity, radius, size, frames, accept) -> np.ndarray | None:
    """A start position (of `CANDIDATES` uniform draws) whose trajectory satisfies
    `accept(starts (N, 2), hits (N,)) -> (N,) bool`, or None."""
    lo, hi = centre_bounds(radius, size)
    starts = rng.uniform(lo, hi, size=(CANDIDATES, 2))
    _, hits = simulate(starts, velocity, radius, size, frames)
    ok = np.flatnonzero(accept(starts, hits))
    return starts[ok[0]] if ok.size else None


def _sample_a(rng, frames: int, size: int) -> MovingObject | None:
    """Object A with uniformly drawn target direction, speed and bounce classes, or None if no
    trajectory matching them was found."""
    direction, speed, bounces = int(rng.integers(8)), int(rng.integers(2)), int(rng.integers(3))
    for _ in range(ATTEMPTS):
        angle = direction * math.pi / 4 + rng.uniform(-HEADING_JITTER, HEADING_JITTER)
        velocity = _velocity(angle, rng.uniform(*SPEED_RANGES[speed]), size, frames)
        radius = rng.uniform(*RADIUS_RANGE) * size
        start = _find_start(rng, velocity, radius, size, frames, lambda s, h: bounce_class(h) == bounces)
        if start is not None:
            return MovingObject(start, velocity, radius, _shape(rng), COLOUR_A)
    return None


def _sample_b(rng, a: MovingObject, frames: int, size: int) -> MovingObject | None:
    """Object B, placed so that the first_event label is A (p=3/4 when A bounces) or B; None if
    that label cannot be reached."""
    time_a = float(first_hit_time(a.start, a.velocity, a.radius, size))
    want_a = time_a <= frames - 1 and rng.random() < 0.75
    for _ in range(ATTEMPTS):
        path = rng.uniform(*SPEED_RANGES[int(rng.integers(2))])
        velocity = _velocity(rng.uniform(0, 2 * math.pi), path, size, frames)
        radius = rng.uniform(*RADIUS_RANGE) * size

        def accept(starts, hits, velocity=velocity, radius=radius):
            times = first_hit_time(starts, velocity, radius, size)
            return np.array([first_event_class(time_a, t, frames) == (0 if want_a else 1) for t in times])

        start = _find_start(rng, velocity, radius, size, frames, accept)
        if start is not None:
            return MovingObject(start, velocity, radius, _shape(rng), COLOUR_B)
    return None


def _sample_distractor(rng, frames: int, size: int) -> MovingObject:
    """A third object with any colour but A's and B's, heading and speed: no label depends on it."""
    path = rng.uniform(SPEED_RANGES[0][0], SPEED_RANGES[1][1])
    velocity = _velocity(rng.uniform(0, 2 * math.pi), path, size, frames)
    radius = rng.uniform(*RADIUS_RANGE) * size
    start = rng.uniform(*centre_bounds(radius, size), size=2)
    colour = DISTRACTOR_COLOURS[int(rng.integers(len(DISTRACTOR_COLOURS)))]
    return MovingObject(start, velocity, radius, _shape(rng), colour)


def _shape(rng) -> str:
    return "square" if rng.random() < 0.5 else "disc"


def _background(rng, size: int) -> np.ndarray:
    """`(H, W, 3)` float: a plain dark tint, lightly textured by a sinusoid half the time, inside a
    light grey wall border."""
    base = rng.uniform(40, 100, size=3)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    if rng.random() < 0.5:
        fx, fy = rng.integers(-3, 4, size=2)
        y, x = np.mgrid[0:size, 0:size] + 0.5
        wave = np.sin(2 * np.pi * (fx * x + fy * y) / size + rng.uniform(0, 2 * np.pi))
        image += rng.uniform(6, 14) * wave[..., None]
    margin = wall_margin(size)
    inside = np.zeros((size, size), dtype=bool)
    inside[margin:-margin, margin:-margin] = True
    image[~inside] = rng.uniform(150, 190)
    return image


def sample_scene(rng: np.random.Generator, frames: int = 16, size: int = 64) -> Scene:
    """A random scene whose labels are all defined, with target classes drawn uniformly."""
    _check_clip_args(frames, size)
    while True:  # rejection: retry the rare draws whose targets cannot be met
        a = _sample_a(rng, frames, size)
        b = _sample_b(rng, a, frames, size) if a is not None else None
        if b is not None:
            break
    objects = [a, b] + ([_sample_distractor(rng, frames, size)] if rng.random() < 0.5 else [])
    order = [int(i) for i in rng.permutation(len(objects))]
    return Scene(_background(rng, size), objects, order)


# ------------------------------------------------------------------------------ rendering


def _coverage(obj: MovingObject, positions: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased coverage `(T, H, W)` in [0, 1] of one object at centres `positions (T, 2)`."""
    grid = np.arange(size, dtype=float) + 0.5  # pixel centres
    dx = grid[None, None, :] - positions[:, 0, None, None]  # (T, 1, W)
    dy = grid[None, :, None] - positions[:, 1, None, None]  # (T, H, 1)
    if obj.shape == "disc":
        return np.clip(obj.radius + 0.5 - np.sqrt(dx**2 + dy**2), 0, 1)
    return np.clip(obj.radius + 0.5 - np.abs(dx), 0, 1) * np.clip(obj.radius + 0.5 - np.abs(dy), 0, 1)


def render_scene(scene: Scene, frames: int, size: int) -> np.ndarray:
    """uint8 `(T, H, W, 3)` RGB frames of a scene, objects drawn back to front in `scene.order`."""
    video = np.broadcast_to(scene.background, (frames, size, size, 3)).copy()
    for index in scene.order:
        obj = scene.objects[index]
        positions, _ = simulate(obj.start, obj.velocity, obj.radius, size, frames)  # (T, 2)
        alpha = _coverage(obj, positions, size)[..., None]  # (T, H, W, 1)
        video = video * (1 - alpha) + np.asarray(obj.colour, dtype=float) * alpha
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def generate_clip(
    rng: np.random.Generator, frames: int = 16, size: int = 64
) -> tuple[np.ndarray, dict[str, int]]:
    """One clip, uint8 `(frames, size, size, 3)`, and its labels `{task: class index}` (see `TASKS`)."""
    scene = sample_scene(rng, frames, size)
    return render_scene(scene, frames, size), scene_labels(scene, frames, size)


def _check_clip_args(frames: int, size: int) -> None:
    if frames < 4:
        raise ValueError(f"frames must be >= 4 for the labels to be meaningful, got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (H.264 needs even sizes), got {size}")


# ------------------------------------------------------------------------------ dataset on disk


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of video `index` of `split`: train and val streams differ, and a video does not
    depend on how many others are generated."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _settings(train, val, frames, size, seed, fps) -> dict:
    """What a cached dataset must match: the arguments and the generator's version."""
    return dict(version=VERSION, train=train, val=val, frames=frames, size=size, seed=seed, fps=fps)


def _video_name(split: str, index: int) -> str:
    return f"videos/{split}/{index:05d}.mp4"


def _is_complete(out: Path, settings: dict) -> dict | None:
    """The meta of a finished dataset in `out` made with `settings`, or None."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in settings.items()):
        return None
    files = [f"{task}_{split}.csv" for task in TASKS for split in SPLITS]
    files += [_video_name(split, i) for split in SPLITS for i in range(settings[split])]
    return meta if all((out / f).is_file() for f in files) else None


def _remove_stale(folder: Path, count: int) -> None:
    """Delete videos numbered `count` or more, left by an earlier, larger dataset."""
    for path in folder.glob("*.mp4"):
        if path.stem.isdigit() and int(path.stem) >= count:
            path.unlink()


def write_temporal_dataset(
    out_dir: str | os.PathLike,
    train: int = 200,
    val: int = 100,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    fps: float = 8,
    progress: bool = True,
) -> dict:
    """Write `videos/{train,val}/NNNNN.mp4`, one `videos/...,label` CSV per task and split
    (`{task}_{split}.csv`, paths relative to `out_dir`) and `meta.json`; return the meta.

    A cache: when `out_dir` already holds a complete dataset made with the same arguments, nothing
    is written. `meta.json` is written last, so an interrupted run is redone from scratch.
    """
    if train < 0 or val < 0 or train + val == 0:
        raise ValueError(f"train and val must be >= 0 and not both 0, got {train} and {val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _check_clip_args(frames, size)
    out = Path(out_dir)
    settings = _settings(train, val, frames, size, seed, fps)
    cached = _is_complete(out, settings)
    if cached is not None:
        return cached
    (out / "meta.json").unlink(missing_ok=True)
    counts = {task: {} for task in TASKS}
    with tqdm(total=train + val, desc="synthetic videos", disable=not progress) as bar:
        for split, count in zip(SPLITS, (train, val), strict=True):
            rows = []
            for index in range(count):
                video, labels = generate_clip(clip_rng(seed, split, index), frames, size)
                write_video(out / _video_name(split, index), video, fps=fps)
                rows.append(labels)
                bar.update()
            (out / "videos" / split).mkdir(parents=True, exist_ok=True)
            _remove_stale(out / "videos" / split, count)
            for task, classes in TASKS.items():
                lines = [f"{_video_name(split, i)},{row[task]}\n" for i, row in enumerate(rows)]
                write_text(out / f"{task}_{split}.csv", "".join(lines))
                counts[task][split] = [sum(row[task] == c for row in rows) for c in range(len(classes))]
    meta = {**settings, "tasks": list(TASKS), "classes": TASKS, "counts": counts}
    write_json(out / "meta.json", meta)
    return meta
