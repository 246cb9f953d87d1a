import itertools
import logging

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from conftest import moving_square_frames
from vjepa_world.data import EpochSampler, VideoDataset, collate_clips, random_resized_crop
from vjepa_world.data.transforms import crop_box
from vjepa_world.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_indices,
    normalize,
    preprocess_clip,
    read_clip_frames,
    write_video,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)


def write_png(path, frame):
    """One RGB uint8 `(H, W, 3)` frame as a lossless PNG, through PyAV (no PIL needed)."""
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def half_black_frames(frames=1, height=40, width=40):
    """Left half black, right half white: any crop, resize or flip shows in the result."""
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    video[:, :, width // 2 :] = 255
    return video


def pixels(video):
    """Normalised `(3, T, H, W)` back to 0..255 values."""
    return (video * STD + MEAN) * 255


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    write_video(root / "a" / "one.mp4", moving_square_frames(seed=1), fps=10)
    write_video(root / "b" / "two.mp4", moving_square_frames(frames=12, seed=2), fps=10)
    write_png(root / "b" / "still.png", moving_square_frames(frames=1, seed=3)[0])
    return root


def test_folder_source_gives_normalised_clips_and_images(folder):
    data = VideoDataset(folder, num_frames=4, frame_step=2, clips_per_video=2, image_size=32)
    assert [p.name for p in data.files] == ["one.mp4", "still.png", "two.mp4"] and len(data) == 6
    for key in range(len(data)):
        item = data[key]
        assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
        assert item["label"] == -1 and item["index"] == key and item["bad_files"] == 0
        values = pixels(item["video"])
        assert values.min() > -3 and values.max() < 258  # ImageNet-normalised 0..255 content
    image = data[2]["video"]  # the PNG: one frame repeated
    assert all(torch.equal(image[:, 0], image[:, t]) for t in range(4))
    assert VideoDataset([folder / "a" / "one.mp4"], num_frames=4, image_size=32).files == data.files[:1]


def test_csv_source_with_labels_and_relative_paths(folder, tmp_path):
    listing = folder / "list.csv"
    listing.write_text(f"a/one.mp4,3\n\n{folder / 'b' / 'two.mp4'},7\nb/still.png\n")
    data = VideoDataset(listing, num_frames=4, image_size=32)
    assert data.files == [folder / "a" / "one.mp4", folder / "b" / "two.mp4", folder / "b" / "still.png"]
    assert data.labels == [3, 7, -1] and data.classes is None
    assert [data[i]["label"] for i in range(3)] == [3, 7, -1]

    named = folder / "named.csv"
    named.write_text("a/one.mp4,dog\nb/two.mp4,cat\nb/still.png,dog\n")
    data = VideoDataset(named, num_frames=4, image_size=32)
    assert data.classes == ["cat", "dog"] and data.labels == [1, 0, 1]


def test_empty_sources_raise_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.csv").write_text("\n\n")
    for source, message in [
        (tmp_path / "empty", "holds no video or image files"),
        (tmp_path / "empty.csv", "lists no files"),
        (tmp_path / "nowhere", "does not exist"),
        (tmp_path / "nowhere.csv", "does not exist"),
        ([], "holds no files"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            VideoDataset(source, num_frames=4)
        assert "\n" not in str(info.value)


def test_items_are_deterministic_per_key_and_change_each_epoch(folder):
    data = VideoDataset(folder, num_frames=4, frame_step=2, image_size=32, seed=5)
    again = VideoDataset(folder, num_frames=4, frame_step=2, image_size=32, seed=5)
    assert torch.equal(data[1]["video"], again[1]["video"])  # another instance (worker, process, resume)
    assert torch.equal(data[0]["video"], data[0]["video"])
    next_epoch = data[0 + len(data)]
    assert next_epoch["index"] == 0 and not torch.equal(next_epoch["video"], data[0]["video"])
    other_seed = VideoDataset(folder, num_frames=4, frame_step=2, image_size=32, seed=6)
    assert not torch.equal(other_seed[0]["video"], data[0]["video"])


def test_eval_mode_takes_evenly_spaced_centre_crops(video_file):
    data = VideoDataset(
        [video_file], num_frames=4, frame_step=3, clips_per_video=2, image_size=32, train=False
    )
    for clip, window in enumerate(clip_indices(24, 4, 3, 2)):
        expected = preprocess_clip(read_clip_frames(video_file, window), 32)
        assert torch.equal(data[clip]["video"], expected)
        assert torch.equal(data[clip + len(data)]["video"], expected)  # no randomness in eval mode


def test_views_are_crops_from_first_to_last_position_and_the_middle_one_is_the_centre():
    frames = half_black_frames(height=40, width=120)  # resized to 18 x 54: views start at x = 0, 19, 38
    left, middle, right = (pixels(preprocess_clip(frames, 16, view, views=3)) for view in range(3))
    assert left.max() < 1 and right.min() > 254  # all black, all white
    assert torch.equal(preprocess_clip(frames, 16, 1, views=3), preprocess_clip(frames, 16))
    assert middle[:, :, :, :6].max() < 1 and middle[:, :, :, 10:].min() > 254  # the edge at x = 27
    with pytest.raises(ValueError, match="view must be in"):
        preprocess_clip(frames, 16, 3, views=3)


def test_eval_views_are_indexed_inside_clips(video_file):
    data = VideoDataset(
        [video_file], num_frames=4, frame_step=3, clips_per_video=2, views=3, image_size=32, train=False
    )
    assert len(data) == 6
    for index in range(6):
        clip, view = divmod(index, 3)
        frames = read_clip_frames(video_file, clip_indices(24, 4, 3, 2)[clip])
        assert torch.equal(data[index]["video"], preprocess_clip(frames, 32, view, views=3))
    with pytest.raises(ValueError, match="views are evaluation crops"):
        VideoDataset([video_file], num_frames=4, views=3, train=True)


def test_full_crop_is_the_resized_frame_and_flip_mirrors_it():
    frames = half_black_frames(frames=2)
    floats = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
    expected = normalize(F.interpolate(floats, size=(16, 16), mode="bilinear", antialias=True))
    plain = random_resized_crop(frames, 16, torch.Generator().manual_seed(0), (1, 1), (1, 1), flip=False)
    torch.testing.assert_close(plain, expected)
    assert pixels(plain)[:, :, :, :7].max() < 1 and pixels(plain)[:, :, :, 9:].min() > 254
    flipped = [
        random_resized_crop(frames, 16, torch.Generator().manual_seed(seed), (1, 1), (1, 1))
        for seed in range(12)
    ]
    mirrored = [torch.equal(clip, expected.flip(-1)) for clip in flipped]
    assert all(m or torch.equal(clip, expected) for m, clip in zip(mirrored, flipped, strict=True))
    assert 0 < sum(mirrored) < 12  # p = 0.5


def test_crop_boxes_follow_the_random_resized_crop_rule():
    generator = torch.Generator().manual_seed(0)
    boxes = [crop_box(48, 64, generator, (0.3, 1.0), (0.75, 1.35)) for _ in range(200)]
    for top, left, h, w in boxes:
        assert 0 <= top <= 48 - h and 0 <= left <= 64 - w
        assert 0.3 * 0.9 <= h * w / (48 * 64) <= 1.0 and 0.7 <= w / h <= 1.4
    assert len(set(boxes)) > 150
    # no box of the requested area and ratio fits: the widest centre crop of ratio 1
    assert crop_box(48, 64, generator, (1, 1), (1, 1)) == (0, 8, 48, 48)
    # non-square frame, whole-area crop: the centre square crop, resized
    frames = half_black_frames(height=48, width=64)
    clip = random_resized_crop(frames, 24, generator, (1, 1), (1, 1), flip=False)
    crop = torch.from_numpy(frames[:, :, 8:56]).permute(0, 3, 1, 2).float() / 255
    expected = normalize(F.interpolate(crop, size=(24, 24), mode="bilinear", antialias=True))
    torch.testing.assert_close(clip, expected)


def test_fps_sets_the_frame_step_per_video(tmp_path):
    levels = np.arange(24) * 10  # frame t is grey level 10 t
    grey = np.broadcast_to(levels[:, None, None, None], (24, 32, 32, 3)).astype(np.uint8)
    path = write_video(tmp_path / "grey.mp4", grey, fps=20)
    data = VideoDataset([path], num_frames=4, frame_step=1, fps=5, image_size=16, train=False)
    window = clip_indices(24, 4, 4, 1)[0]  # 20 fps / 5 fps: every 4th frame
    assert window == [5, 9, 13, 17]
    seen = pixels(data[0]["video"]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(seen, torch.tensor(levels[window], dtype=torch.float32), atol=3, rtol=0)
    stepped = VideoDataset([path], num_frames=4, frame_step=4, image_size=16, train=False)
    assert torch.equal(stepped[0]["video"], data[0]["video"])


def test_bad_files_are_skipped_counted_and_warned_once(folder, caplog):
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    listing = folder / "bad.csv"
    listing.write_text("empty.mp4,1\ngarbage.mp4,2\nmissing.mp4,3\na/one.mp4,4\n")
    data = VideoDataset(listing, num_frames=4, image_size=32)
    with caplog.at_level(logging.WARNING, logger="vjepa_world.data.datasets"):
        item = data[0]
        assert item["bad_files"] == 3 and item["label"] == 4 and item["index"] == 0
        assert data[3]["bad_files"] == 0
        assert data[2]["bad_files"] == 1 and data[2]["label"] == 4  # wraps: missing -> one.mp4
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3  # once per file, though item 2 met missing.mp4 again
    assert all(name in " ".join(warned) for name in ["empty.mp4", "garbage.mp4", "missing.mp4"])


def test_every_file_bad_raises(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(b"\x00\x01junk" * 99)
    data = VideoDataset(tmp_path, num_frames=4, image_size=32)
    with pytest.raises(
        ValueError, match=r"none of the 2 files in .* could be decoded \(first error: "
    ) as info:
        data[1]
    assert "\n" not in str(info.value)


def test_epoch_sampler_splits_ranks_resumes_and_reshuffles():
    size, ranks = 10, 3
    streams = [
        list(itertools.islice(EpochSampler(size, seed=1, rank=r, world_size=ranks), 9)) for r in range(ranks)
    ]
    first = [set(keys[:3]) for keys in streams]  # 10 // 3 = 3 keys per rank per epoch
    assert set.union(*first) <= set(range(size)) and len(set.union(*first)) == 9  # disjoint, 9 of 10
    assert all(min(keys[3:6]) >= size and max(keys[3:6]) < 2 * size for keys in streams)
    assert [k % size for k in streams[0][:3]] != [k % size for k in streams[0][3:6]]  # new order
    for start in (0, 2, 3, 7):
        resumed = list(
            itertools.islice(EpochSampler(size, seed=1, rank=1, world_size=ranks, start=start), 9 - start)
        )
        assert resumed == streams[1][start:]
    with pytest.raises(ValueError, match="smaller than one global batch"):
        EpochSampler(2, world_size=3)


def test_epoch_sampler_global_batch_is_independent_of_the_process_count():
    alone = list(itertools.islice(EpochSampler(13, seed=2, batch_size=4), 12))
    split = [
        list(itertools.islice(EpochSampler(13, seed=2, rank=r, world_size=2, batch_size=2), 6))
        for r in (0, 1)
    ]
    for step in range(3):  # global batch = rank 0's rows then rank 1's
        assert (
            alone[4 * step : 4 * step + 4]
            == split[0][2 * step : 2 * step + 2] + split[1][2 * step : 2 * step + 2]
        )


def test_dataloader_workers_give_the_same_batches(folder):
    data = VideoDataset(folder, num_frames=4, frame_step=2, image_size=32)

    def batches(workers):
        loader = DataLoader(
            data,
            batch_size=2,
            sampler=EpochSampler(len(data), seed=3),
            num_workers=workers,
            collate_fn=collate_clips,
        )
        return list(itertools.islice(loader, 3))

    serial, parallel = batches(0), batches(2)
    for a, b in zip(serial, parallel, strict=True):
        assert a["video"].shape == (2, 3, 4, 32, 32)
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
        assert torch.equal(a["label"], b["label"]) and a["bad_files"] == b["bad_files"] == 0
    indices = torch.cat([batch["index"] for batch in serial]).tolist()  # 6 keys: two epochs of 3 files
    assert sorted(indices[:3]) == sorted(indices[3:]) == [0, 1, 2]
