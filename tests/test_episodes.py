import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import moving_square_frames
from vjepa_world.data.episodes import (
    Episode,
    LeRobotDataset,
    SequenceDataset,
    encode_episodes,
    read_episode,
    write_lerobot_dataset,
)
from vjepa_world.data.video import write_video

LENGTHS = (40, 14, 9)  # episode 0 is long enough for windows that seek (start >= 24)
TASKS = ("push the square", "push the square", "reach")
FPS = 10
HEIGHT, WIDTH = 48, 64


def make_episode(index: int, length: int) -> Episode:
    """Random-walk actions and states, a moving square on screen, done on the last step."""
    rng = np.random.default_rng(index)
    actions = np.cumsum(rng.normal(size=(length, 2)), axis=0).astype(np.float32)
    states = np.cumsum(rng.normal(size=(length, 3)), axis=0).astype(np.float32)
    dones = np.zeros(length, dtype=bool)
    dones[-1] = True
    return Episode(
        frames=moving_square_frames(length, HEIGHT, WIDTH, seed=index),
        actions=actions,
        states=states,
        rewards=rng.normal(size=length).astype(np.float32),
        dones=dones,
        fps=FPS,
        task=TASKS[index],
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Our three-episode dataset, written from a generator (streamed, never all in memory)."""
    out = tmp_path_factory.mktemp("lerobot") / "sim"
    episodes = (make_episode(i, n) for i, n in enumerate(LENGTHS))
    return write_lerobot_dataset(out, episodes, progress=False)


def write_foreign_dataset(root, lengths=(12, 7), video_frames=None, fps=15):
    """A dataset laid out by hand as LeRobot writes it: two cameras named `observation.images.*`,
    state as variable-size lists, no next.reward column. `video_frames` overrides frames per video."""
    features = {
        "observation.images.top": {
            "dtype": "video",
            "shape": [32, 32, 3],
            "names": ["height", "width", "channel"],
        },
        "observation.images.wrist": {
            "dtype": "video",
            "shape": [32, 32, 3],
            "names": ["height", "width", "channel"],
        },
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [3], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        **{
            k: {"dtype": "int64", "shape": [1], "names": None}
            for k in ("frame_index", "episode_index", "index")
        },
    }
    info = {
        "codebase_version": "v2.0",
        "robot_type": "aloha",
        "fps": fps,
        "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    rows = [{"episode_index": e, "tasks": ["fold"], "length": n} for e, n in enumerate(lengths)]
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = []
    for e, n in enumerate(lengths):
        rng = np.random.default_rng(100 + e)
        state, action = rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
        table = pa.table(
            {
                "observation.state": pa.array(state.tolist(), type=pa.list_(pa.float32())),
                "action": pa.array(action.tolist(), type=pa.list_(pa.float32(), 3)),
                "next.done": pa.array(np.arange(n) == n - 1),
                "frame_index": pa.array(np.arange(n)),
                "episode_index": pa.array(np.full(n, e)),
                "index": pa.array(np.arange(n) + sum(lengths[:e])),
            }
        )
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / "data" / "chunk-000" / f"episode_{e:06d}.parquet")
        top = moving_square_frames(video_frames or n, 32, 32, seed=e)
        for key, frames in (("top", top), ("wrist", 255 - top)):
            write_video(
                root / f"videos/chunk-000/observation.images.{key}/episode_{e:06d}.mp4", frames, fps=fps
            )
        expected.append((state, action, top))
    return root, expected


def count_calls(encode):
    """Wrap encode_fn to record the batch size of every call."""
    calls = []

    def wrapped(frames):
        calls.append(len(frames))
        return encode(frames)

    return wrapped, calls


def channel_means(frames: torch.Tensor) -> torch.Tensor:
    """A toy encoder: uint8 (B, H, W, 3) -> (B, 2, 3), the channel means of the top and bottom halves."""
    halves = frames.float().unflatten(1, (2, -1))  # (B, 2, H/2, W, 3)
    return halves.mean(dim=(2, 3))


# ---------------------------------------------------------------------------- writing and reading


def test_round_trip_is_exact_for_columns_and_close_for_frames(dataset):
    for index, length in enumerate(LENGTHS):
        original, read = make_episode(index, length), read_episode(dataset, index)
        for name in ("actions", "states", "rewards", "dones"):
            np.testing.assert_array_equal(getattr(read, name), getattr(original, name))
            assert getattr(read, name).dtype == getattr(original, name).dtype
        assert read.frames.shape == original.frames.shape and read.frames.dtype == np.uint8
        assert np.abs(read.frames.astype(int) - original.frames).max() <= 3  # lossless H.264 (yuv444p)
        assert (read.fps, read.task, len(read)) == (FPS, TASKS[index], length)


def test_parquet_schema_and_meta_files(dataset):
    info = json.loads((dataset / "meta" / "info.json").read_text())
    expected = {
        "codebase_version": "v2.0",
        "robot_type": "sim",
        "total_episodes": 3,
        "total_frames": sum(LENGTHS),
        "total_tasks": 2,
        "total_videos": 3,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": "0:3"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    }
    assert {k: info[k] for k in expected} == expected
    features = info["features"]
    image = features["observation.image"]
    assert (image["dtype"], image["shape"], image["names"]) == (
        "video",
        [HEIGHT, WIDTH, 3],
        ["height", "width", "channel"],
    )
    assert image["video_info"]["video.fps"] == FPS and image["video_info"]["video.codec"] == "h264"
    assert (features["observation.state"]["dtype"], features["observation.state"]["shape"]) == (
        "float32",
        [3],
    )
    assert (features["action"]["dtype"], features["action"]["shape"]) == ("float32", [2])
    scalars = {"next.reward": "float32", "next.done": "bool", "timestamp": "float32"}
    scalars |= dict.fromkeys(("frame_index", "episode_index", "index", "task_index"), "int64")
    assert {k: (features[k]["dtype"], features[k]["shape"]) for k in scalars} == {
        k: (v, [1]) for k, v in scalars.items()
    }

    episodes = [json.loads(line) for line in (dataset / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert episodes == [{"episode_index": i, "tasks": [TASKS[i]], "length": n} for i, n in enumerate(LENGTHS)]
    tasks = [json.loads(line) for line in (dataset / "meta" / "tasks.jsonl").read_text().splitlines()]
    assert tasks == [{"task_index": 0, "task": "push the square"}, {"task_index": 1, "task": "reach"}]

    table = pq.read_table(dataset / "data" / "chunk-000" / "episode_000001.parquet")
    assert table.schema.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("action").type == pa.list_(pa.float32(), 2)
    types = {"next.reward": pa.float32(), "next.done": pa.bool_(), "timestamp": pa.float32()}
    types |= dict.fromkeys(("frame_index", "episode_index", "index", "task_index"), pa.int64())
    assert {k: table.schema.field(k).type for k in types} == types
    columns = table.to_pydict()
    np.testing.assert_array_equal(columns["frame_index"], np.arange(14))
    np.testing.assert_array_equal(columns["index"], np.arange(14) + 40)  # global: after episode 0's 40 rows
    np.testing.assert_allclose(columns["timestamp"], np.arange(14) / FPS, rtol=1e-6)
    assert set(columns["episode_index"]) == {1} and set(columns["task_index"]) == {0}
    assert (dataset / "videos" / "chunk-000" / "observation.image" / "episode_000002.mp4").is_file()

    stats = json.loads((dataset / "meta" / "stats.json").read_text())
    actions = np.concatenate([make_episode(i, n).actions for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["max"], actions.max(0))
    assert np.array(stats["observation.image"]["mean"]).shape == (3, 1, 1)


def test_reads_a_dataset_laid_out_by_hand_like_lerobot(tmp_path):
    root, expected = write_foreign_dataset(tmp_path / "foreign")
    meta = LeRobotDataset(root)
    assert meta.image_key == "observation.images.top"  # no observation.image: the first video feature
    assert (len(meta), meta.fps) == (2, 15.0)
    for e, (state, action, top) in enumerate(expected):
        episode = read_episode(root, e)
        np.testing.assert_array_equal(episode.states, state)
        np.testing.assert_array_equal(episode.actions, action)
        np.testing.assert_array_equal(episode.rewards, np.zeros(len(state), np.float32))  # no next.reward
        np.testing.assert_array_equal(episode.dones, np.arange(len(state)) == len(state) - 1)
        assert episode.task == "fold" and np.abs(episode.frames.astype(float) - top).mean() < 8
    wrist = read_episode(root, 0, image_key="observation.images.wrist").frames
    assert np.abs(wrist.astype(float) - (255 - expected[0][2])).mean() < 8
    item = SequenceDataset(root, 4, frame_skip=2, image_key="observation.images.top")[0]
    assert item["frames"].shape == (4, 32, 32, 3) and item["actions"].shape == (4, 6)
    assert SequenceDataset(root, 2, state_key=None)[0]["states"].shape == (2, 0)  # a dataset without states


# ---------------------------------------------------------------------------- training windows


def expected_windows(lengths, steps, skip):
    return [(e, s) for e, n in enumerate(lengths) for s in range(n - steps * skip + 1)]


@pytest.mark.parametrize(("steps", "skip"), [(4, 1), (3, 2)])
def test_sequence_windows_and_frame_skip_actions_are_exact(dataset, steps, skip):
    sequences = SequenceDataset(dataset, steps, frame_skip=skip)
    windows = expected_windows(LENGTHS, steps, skip)
    assert len(sequences) == len(windows) and sequences.skipped == []
    assert [sequences.window(i) for i in range(len(sequences))] == windows
    originals = [make_episode(i, n) for i, n in enumerate(LENGTHS)]
    decoded = [read_episode(dataset, i).frames for i in range(len(LENGTHS))]  # whole videos, from the start
    late = windows.index((0, LENGTHS[0] - steps * skip))  # decoded by seeking to a keyframe
    for i in (0, 7, late, len(windows) - 1):
        episode, start = windows[i]
        item, original = sequences[i], originals[episode]
        assert (item["episode"], item["start"]) == (episode, start)
        sampled = start + skip * np.arange(steps)
        raw = original.actions[start : start + steps * skip]  # (T * k, A) rows of the window
        expected_actions = np.stack([np.concatenate(raw[t * skip : (t + 1) * skip]) for t in range(steps)])
        assert item["actions"].shape == (steps, skip * 2) and item["actions"].dtype == torch.float32
        np.testing.assert_array_equal(item["actions"].numpy(), expected_actions)
        np.testing.assert_array_equal(item["states"].numpy(), original.states[sampled])
        rewards = original.rewards[start : start + steps * skip].reshape(steps, skip).sum(1)
        np.testing.assert_allclose(item["rewards"].numpy(), rewards, rtol=1e-6)
        dones = original.dones[start : start + steps * skip].reshape(steps, skip).any(1)
        np.testing.assert_array_equal(item["dones"].numpy(), dones)
        frames = item["frames"].numpy()
        assert frames.shape == (steps, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames, decoded[episode][sampled])  # the very frames, seek or not


def test_image_size_resizes_frames(dataset):
    assert SequenceDataset(dataset, 2, image_size=32)[0]["frames"].shape == (2, 32, 32, 3)
    assert SequenceDataset(dataset, 2, image_size=(24, 40))[0]["frames"].shape == (2, 24, 40, 3)


def test_short_episodes_are_skipped_and_counted_or_fail_when_all_are(dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="vjepa_world.data.episodes"):
        sequences = SequenceDataset(dataset, 5, frame_skip=2)  # a window covers 10 rows: episode 2 has 9
    assert sequences.skipped == [2]
    assert len(sequences) == len(expected_windows(LENGTHS[:2], 5, 2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 3 episodes" in warnings[0]
    with pytest.raises(ValueError, match=r"no episode .* has the 45 rows .*longest: 40"):
        SequenceDataset(dataset, 9, frame_skip=5)
    assert len(SequenceDataset(dataset, 5, frame_skip=2, episodes=[1])) == 14 - 10 + 1


# ---------------------------------------------------------------------------- bad input


def test_missing_files_and_keys_give_one_line_errors(tmp_path):
    root, _ = write_foreign_dataset(tmp_path / "foreign")
    with pytest.raises(
        ValueError, match=r"state_key='observation.pose' is not a feature .*observation.state"
    ):
        SequenceDataset(root, 2, state_key="observation.pose")
    with pytest.raises(ValueError, match=r"image_key='observation.image' is not a video feature"):
        LeRobotDataset(root, image_key="observation.image")
    video = root / "videos/chunk-000/observation.images.top/episode_000001.mp4"
    video.unlink()
    for load in (lambda: SequenceDataset(root, 2), lambda: read_episode(root, 1)):
        with pytest.raises(
            FileNotFoundError, match=r"episode_000001.mp4 not found: the video file of episode 1"
        ):
            load()
    (root / "meta" / "info.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"info.json not found: .* is not a LeRobot v2 dataset"):
        LeRobotDataset(root)


def test_video_shorter_than_the_rows_is_an_error(tmp_path):
    root, _ = write_foreign_dataset(tmp_path / "foreign", lengths=(12,), video_frames=8)
    with pytest.raises(ValueError, match=r"episode_000000.mp4 has 8 frames but episode 0 has 12 rows"):
        read_episode(root, 0)
    with pytest.raises(ValueError, match=r"has 8 frames"):
        SequenceDataset(root, 2)[0]


def test_writer_rejects_inconsistent_episodes(tmp_path):
    with pytest.raises(ValueError, match="no episodes to write"):
        write_lerobot_dataset(tmp_path / "a", [], progress=False)
    odd = make_episode(0, 4)
    odd.frames = odd.frames[:, :47]
    with pytest.raises(ValueError, match=r"frames are 47x64, H.264 needs even sizes"):
        write_lerobot_dataset(tmp_path / "b", [odd], progress=False)
    fast = make_episode(1, 4)
    fast.fps = 20
    with pytest.raises(ValueError, match=r"episode 1 runs at 20 fps but the first at 10: pass fps="):
        write_lerobot_dataset(tmp_path / "c", [make_episode(0, 4), fast], progress=False)
    assert not (tmp_path / "c" / "meta" / "info.json").exists()  # an interrupted write is no dataset


# ---------------------------------------------------------------------------- feature cache


def test_feature_cache_encodes_each_frame_once_and_is_reused(dataset, tmp_path):
    encode, calls = count_calls(channel_means)
    cache = encode_episodes(dataset, encode, tmp_path / "cache", key="means-v1", batch_size=8, progress=False)
    assert sum(calls) == sum(LENGTHS) and max(calls) == 8  # every frame once, in batches of at most 8

    again, again_calls = count_calls(channel_means)
    assert encode_episodes(dataset, again, tmp_path / "cache", key="means-v1", progress=False) == cache
    assert again_calls == []  # same key: reused
    other, other_calls = count_calls(channel_means)
    encode_episodes(dataset, other, tmp_path / "cache", key="means-v2", progress=False)
    assert sum(other_calls) == sum(LENGTHS)  # another encoder key: encoded afresh

    sequences = SequenceDataset(dataset, 3, frame_skip=2, features=cache)
    plain = SequenceDataset(dataset, 3, frame_skip=2)
    for i in (0, len(sequences) - 1):
        item = sequences[i]
        assert "frames" not in item and item["features"].shape == (3, 2, 3)
        torch.testing.assert_close(item["features"], channel_means(plain[i]["frames"]))
        torch.testing.assert_close(item["actions"], plain[i]["actions"])


def test_feature_cache_missing_for_a_key_is_an_error(dataset, tmp_path):
    cache = encode_episodes(dataset, channel_means, tmp_path / "cache", key="a", progress=False)
    missing = type(cache)(cache.directory, "b")
    with pytest.raises(FileNotFoundError, match=r"no features of episode 0 for key 'b': run encode_episodes"):
        SequenceDataset(dataset, 2, features=missing)
    with pytest.raises(ValueError, match=r"encode_fn must map uint8 frames"):
        encode_episodes(dataset, lambda f: f.float().mean((1, 2)), tmp_path / "bad", key="x", progress=False)


def test_pairs_give_each_frame_its_predecessor_across_batches_and_previous_rows_follow(dataset, tmp_path):
    """encode_fn(frames, previous) sees row r - 1 beside row r (row 0 beside itself), also across
    batch boundaries; SequenceDataset(previous=True) reads the features of the rows before its own."""
    difference = lambda frames, previous: channel_means(frames) - channel_means(previous)  # (B, 2, 3)
    cache = encode_episodes(
        dataset, difference, tmp_path / "p", key="diff", batch_size=5, pairs=True, progress=False
    )
    meta = LeRobotDataset(dataset)
    for episode, length in enumerate(LENGTHS):
        means = channel_means(torch.from_numpy(meta.read_frames(episode, range(length))))  # (T, 2, 3)
        expected = torch.cat([torch.zeros_like(means[:1]), means[1:] - means[:-1]])
        torch.testing.assert_close(cache.read(episode, slice(None)), expected)
    plain = encode_episodes(dataset, channel_means, tmp_path / "m", key="means", progress=False)
    windows = SequenceDataset(dataset, 3, frame_skip=2, features=plain, previous=True)
    for i in (0, 5, len(windows) - 1):
        item, (episode, start) = windows[i], windows.window(i)
        rows = np.maximum(np.arange(start, start + 6, 2) - 1, 0)
        torch.testing.assert_close(item["previous_features"], plain.read(episode, slice(None))[rows])
    with pytest.raises(ValueError, match="previous= reads the cached features"):
        SequenceDataset(dataset, 3, previous=True)
