import json
import math

import numpy as np
import pytest

from vjepa_world.data import VideoDataset
from vjepa_world.data.synthetic import (
    TASKS,
    MovingObject,
    Scene,
    bounce_class,
    clip_rng,
    direction_class,
    first_event_class,
    first_hit_time,
    generate_clip,
    render_scene,
    sample_scene,
    scene_labels,
    simulate,
    speed_class,
    write_temporal_dataset,
)
from vjepa_world.data.video import read_clip_frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    meta = write_temporal_dataset(out, train=6, val=4, frames=16, size=32, seed=3, progress=False)
    return out, meta


def test_same_seed_gives_the_same_clip_and_labels():
    video, labels = generate_clip(np.random.default_rng(7), frames=16, size=32)
    again, labels_again = generate_clip(np.random.default_rng(7), frames=16, size=32)
    other, _ = generate_clip(np.random.default_rng(8), frames=16, size=32)
    assert video.shape == (16, 32, 32, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video, again)
    assert labels == labels_again
    assert not np.array_equal(video, other)


def test_labels_in_range_and_every_class_common():
    counts = {task: np.zeros(len(classes), dtype=int) for task, classes in TASKS.items()}
    for seed in range(60):
        video, labels = generate_clip(np.random.default_rng(seed), frames=16, size=32)
        assert set(labels) == set(TASKS)
        for task, label in labels.items():
            assert 0 <= label < len(TASKS[task])
            counts[task][label] += 1
        # the video moves: a single frame cannot hold the labels
        assert np.abs(video[0].astype(int) - video[-1].astype(int)).max() > 100
    for task, count in counts.items():
        assert count.min() >= 0.35 * 60 / len(count), (task, count)  # no class rare


def test_direction_class_bins_screen_headings():
    cases = {(1, 0): 0, (1, -1): 1, (0, -1): 2, (-1, -1): 3, (-1, 0): 4, (-1, 1): 5, (0, 1): 6, (1, 1): 7}
    for velocity, label in cases.items():
        assert direction_class(velocity) == label, velocity
    angle = math.radians(40)  # within 22.5 degrees of up_right
    assert direction_class((math.cos(angle), -math.sin(angle))) == 1
    with pytest.raises(ValueError, match="no direction"):
        direction_class((0, 0))


def test_speed_class_splits_path_over_the_clip():
    assert speed_class(1.0, size=64, frames=16) == 0  # 15 px = 0.23 frame widths
    assert speed_class(3.0, size=64, frames=16) == 1  # 45 px = 0.70 frame widths
    assert speed_class(1.0, size=32, frames=16) == 1  # same speed on a smaller frame: fast


def test_simulate_reflects_off_the_walls_and_counts_bounces():
    # size 64: walls 4 px wide, radius 4 -> centres stay in [8, 56]
    positions, hits = simulate([20.0, 32.0], [5.0, 0.0], 4.0, size=64, frames=16)
    assert positions.shape == (16, 2)
    np.testing.assert_allclose(positions[:8, 0], 20 + 5 * np.arange(8))  # free until it reaches 56
    assert positions[8, 0] == pytest.approx(52.0)  # 60 reflected off 56
    assert positions[15, 0] == pytest.approx(17.0)  # 95 -> 56 - (95 - 56)
    np.testing.assert_allclose(positions[:, 1], 32.0)
    assert hits == 1 and bounce_class(hits) == 1
    assert first_hit_time([20.0, 32.0], [5.0, 0.0], 4.0, size=64) == pytest.approx(7.2)

    # into the top-left corner: one hit per axis -> 2 bounces
    positions, hits = simulate([10.0, 11.0], [-1.0, -1.0], 4.0, size=64, frames=16)
    assert hits == 2 and bounce_class(hits) == 2
    assert positions[:, 0].min() >= 8 and positions[:, 1].min() >= 8
    assert direction_class([-1.0, -1.0]) == TASKS["direction"].index("up_left")

    # slow in the middle: no bounce, and never a contact while not moving
    _, hits = simulate([32.0, 32.0], [0.5, 0.5], 4.0, size=64, frames=16)
    assert hits == 0 and bounce_class(hits) == 0
    assert first_hit_time([32.0, 32.0], [0.0, 0.0], 4.0, size=64) == math.inf
    # many bounces, vectorised over starts
    _, hits = simulate(np.full((3, 2), 30.0), [20.0, 0.0], 4.0, size=64, frames=16)
    np.testing.assert_array_equal(hits, [6, 6, 6])


def test_first_event_class_compares_the_first_frames_showing_a_bounce():
    assert first_event_class(3.2, 5.0, frames=16) == 0  # frame 4 before frame 5
    assert first_event_class(5.0, 3.2, frames=16) == 1
    assert first_event_class(2.0, math.inf, frames=16) == 0
    assert first_event_class(3.2, 3.9, frames=16) is None  # both first seen in frame 4
    assert first_event_class(math.inf, math.inf, frames=16) is None
    assert first_event_class(20.0, 18.0, frames=16) is None  # both after the clip


def test_scene_labels_from_a_hand_made_scene_and_rendering_follows_the_trajectory():
    background = np.full((64, 64, 3), 50.0)
    a = MovingObject(np.array([20.0, 32.0]), np.array([5.0, 0.0]), 4.0, "square", (230, 40, 40))
    b = MovingObject(np.array([32.0, 20.0]), np.array([0.0, -1.0]), 4.0, "disc", (40, 90, 235))
    scene = Scene(background, [a, b], order=[1, 0])
    # A (fast, right) hits the right wall at t=7.2 (frame 8); B (slow, up) at t=12 (frame 12)
    labels = scene_labels(scene, frames=16, size=64)
    assert labels == {"direction": 0, "speed": 1, "first_event": 0, "bounces": 1}

    video = render_scene(scene, frames=16, size=64)
    red = np.all(video == (230, 40, 40), axis=-1)  # (T, H, W): A's fully covered pixels
    positions, _ = simulate(a.start, a.velocity, a.radius, 64, 16)
    for t in range(16):
        ys, xs = np.nonzero(red[t])
        assert abs(xs.mean() + 0.5 - positions[t, 0]) < 0.6 and abs(ys.mean() + 0.5 - 32) < 0.6

    scene.objects[1] = MovingObject(np.array([32.0, 20.0]), np.array([0.0, -2.0]), 4.0, "disc", (0, 0, 255))
    assert scene_labels(scene, frames=16, size=64)["first_event"] == 1  # B now hits at t=6
    scene.objects[1] = MovingObject(np.array([32.0, 32.0]), np.array([1.0, 0.0]), 4.0, "disc", (0, 0, 255))
    scene.objects[0] = MovingObject(np.array([30.0, 32.0]), np.array([1.0, 0.0]), 4.0, "disc", (255, 0, 0))
    with pytest.raises(ValueError, match="first_event"):
        scene_labels(scene, frames=16, size=64)  # neither bounces


def test_generate_clip_is_render_of_sampled_scene_with_its_labels():
    scene = sample_scene(np.random.default_rng(5), frames=8, size=32)
    video, labels = generate_clip(np.random.default_rng(5), frames=8, size=32)
    np.testing.assert_array_equal(video, render_scene(scene, frames=8, size=32))
    assert labels == scene_labels(scene, frames=8, size=32)
    assert scene.objects[0].colour == (230, 40, 40) and 2 <= len(scene.objects) <= 3


def test_bad_arguments_raise(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="frames"):
        generate_clip(rng, frames=2)
    with pytest.raises(ValueError, match="size"):
        generate_clip(rng, size=33)
    with pytest.raises(ValueError, match="train and val"):
        write_temporal_dataset(tmp_path, train=0, val=0)
    with pytest.raises(ValueError, match="seed"):
        write_temporal_dataset(tmp_path, seed=-1)


def test_dataset_files_csvs_and_meta(dataset):
    out, meta = dataset
    assert sorted(p.name for p in (out / "videos" / "train").iterdir()) == [f"{i:05d}.mp4" for i in range(6)]
    assert len(list((out / "videos" / "val").iterdir())) == 4
    assert json.loads((out / "meta.json").read_text()) == meta
    assert meta["tasks"] == list(TASKS) and meta["classes"] == TASKS
    assert (meta["frames"], meta["size"], meta["seed"]) == (16, 32, 3)
    for task, classes in TASKS.items():
        for split, count in (("train", 6), ("val", 4)):
            rows = [line.split(",") for line in (out / f"{task}_{split}.csv").read_text().splitlines()]
            assert [path for path, _ in rows] == [f"videos/{split}/{i:05d}.mp4" for i in range(count)]
            labels = [int(label) for _, label in rows]
            expected = [generate_clip(clip_rng(3, split, i), 16, 32)[1][task] for i in range(count)]
            assert labels == expected
            assert meta["counts"][task][split] == [labels.count(c) for c in range(len(classes))]


def test_train_and_val_differ_and_videos_match_the_generator(dataset):
    out, _ = dataset
    train, _ = generate_clip(clip_rng(3, "train", 0), 16, 32)
    val, _ = generate_clip(clip_rng(3, "val", 0), 16, 32)
    assert not np.array_equal(train, val)
    decoded = read_clip_frames(out / "videos" / "train" / "00000.mp4", list(range(16)))
    assert decoded.shape == train.shape
    assert np.abs(decoded.astype(float) - train).mean() < 6  # lossy H.264, same content


def test_readable_by_video_dataset_with_labels(dataset):
    out, _ = dataset
    data = VideoDataset(out / "direction_train.csv", num_frames=16, image_size=32, train=False)
    rows = (out / "direction_train.csv").read_text().splitlines()
    assert len(data) == 6 and data.classes is None
    for i, row in enumerate(rows):
        item = data[i]
        assert item["video"].shape == (3, 16, 32, 32) and item["bad_files"] == 0
        assert item["label"] == int(row.split(",")[1])


def test_second_call_reuses_the_cache_and_new_arguments_rebuild(tmp_path):
    first = write_temporal_dataset(tmp_path, train=3, val=2, frames=8, size=32, seed=1, progress=False)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = write_temporal_dataset(tmp_path, train=3, val=2, frames=8, size=32, seed=1, progress=False)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    (tmp_path / "videos" / "val" / "00001.mp4").unlink()  # incomplete -> rebuilt
    write_temporal_dataset(tmp_path, train=3, val=2, frames=8, size=32, seed=1, progress=False)
    assert (tmp_path / "videos" / "val" / "00001.mp4").is_file()

    smaller = write_temporal_dataset(tmp_path, train=2, val=2, frames=8, size=32, seed=1, progress=False)
    assert smaller["train"] == 2 and sum(smaller["counts"]["speed"]["train"]) == 2
    assert not (tmp_path / "videos" / "train" / "00002.mp4").exists()  # stale video removed
    assert len((tmp_path / "bounces_train.csv").read_text().splitlines()) == 2


def test_make_dataset_command(tmp_path):
    from vjepa_world.cli import main

    assert (
        main(
            [
                "make-dataset",
                "--out",
                str(tmp_path),
                "--train-videos",
                "4",
                "--val-videos",
                "2",
                "--frame-size",
                "32",
            ]
        )
        == 0
    )
    assert len((tmp_path / "speed_val.csv").read_text().splitlines()) == 2
