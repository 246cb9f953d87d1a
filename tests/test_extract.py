import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import moving_square_frames, packaged_footage
from vjepa_world import EncoderConfig, VideoEncoder
from vjepa_world.cli import main
from vjepa_world.data import video as video_module
from vjepa_world.data.video import (
    VideoDecodeError,
    clip_indices,
    iter_clip_frames,
    preprocess_clip,
    read_clip_frames,
    video_frame_count,
    write_video,
)
from vjepa_world.eval import extract_features

MICRO = EncoderConfig(dim=64, depth=2, num_heads=2, patch_size=8, image_size=32, num_frames=4)


def test_pyav_reads_exact_frames_of_a_real_mp4(video_file):
    frames = moving_square_frames()
    assert video_frame_count(video_file) == 24
    clip = read_clip_frames(video_file, [3, 0, 3, 23])
    assert clip.shape == (4, 48, 64, 3) and clip.dtype == np.uint8
    # lossy codec: close to the source frames, and frame 3 really is frame 3 (the square moved)
    assert np.abs(clip[0].astype(int) - frames[3]).mean() < 6
    assert np.abs(clip[0].astype(int) - frames[0]).mean() > np.abs(clip[0].astype(int) - frames[3]).mean()
    assert np.array_equal(clip[0], clip[2])


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50])
def test_bad_files_raise_decode_errors(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoDecodeError):
        video_frame_count(bad)
    with pytest.raises(VideoDecodeError, match="no such file"):
        video_frame_count(tmp_path / "missing.mp4")


def test_streaming_clips_equal_clips_read_one_by_one(video_file):
    windows = [*clip_indices(24, 4, 3, 0), [20, 22, 30, 31]]  # the last one runs past the end
    streamed = list(iter_clip_frames(video_file, windows))
    assert len(streamed) == 3
    for window, clip in zip(windows, streamed, strict=True):
        assert np.array_equal(clip, read_clip_frames(video_file, window))
    assert np.array_equal(streamed[-1][2], read_clip_frames(video_file, [23])[0])  # past the end: last frame


def test_clip_indices():
    assert clip_indices(24, 4, 2, 1) == [[8, 10, 12, 14]]
    assert clip_indices(24, 4, 2, 2) == [[0, 2, 4, 6], [17, 19, 21, 23]]
    assert clip_indices(24, 4, 2, 0) == [[0, 2, 4, 6], [7, 9, 11, 13], [14, 16, 18, 20]]
    assert clip_indices(3, 4, 2, 1) == [[0, 2, 2, 2]]  # short video: repeat the last frame


def test_preprocess_is_the_evaluation_transform():
    frames = np.full((2, 60, 90, 3), 255, dtype=np.uint8)
    clip = preprocess_clip(frames, 32)
    assert clip.shape == (3, 2, 32, 32)
    torch.testing.assert_close(
        clip[:, 0, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def test_extract_pools_and_indexes_rows(tmp_path, video_file):
    other = write_video(tmp_path / "other.mp4", moving_square_frames(frames=12, seed=1), fps=10)
    encoder = VideoEncoder(MICRO)
    result = extract_features(
        encoder, [video_file, other], frames=4, frame_step=2, clips=0, pool=None, progress=False
    )
    assert result.features.shape == (4, 32, 64)  # 3 windows of 7 frames + 1, 2 x 4 x 4 tokens each
    assert result.video_index.tolist() == [0, 0, 0, 1] and result.clip_start.tolist() == [0, 7, 14, 0]
    frame = extract_features(encoder, [video_file], frames=4, clips=1, pool="frame", progress=False)
    assert frame.features.shape == (1, 2, 64)
    mean = extract_features(encoder, [video_file], frames=4, clips=1, pool="mean", progress=False)
    torch.testing.assert_close(mean.features, frame.features.mean(1), atol=1e-6, rtol=0)


def test_bfloat16_extraction_is_close_to_float32(video_file):
    encoder = VideoEncoder(MICRO)
    full = extract_features(encoder, [video_file], frames=4, pool=None, progress=False).features
    fast = extract_features(
        encoder, [video_file], frames=4, pool=None, dtype=torch.bfloat16, progress=False
    ).features
    assert fast.dtype == torch.float32
    assert (fast - full).norm() / full.norm() < 3e-2


def test_extract_command_skips_bad_files(tmp_path, video_file, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", moving_square_frames(seed=2), fps=10)
    write_video(folder / "nested" / "b.mp4", moving_square_frames(seed=3), fps=10)
    (folder / "corrupt.mp4").write_bytes(b"\x00" * 1000)
    image = moving_square_frames(frames=1)[0]
    write_video(folder / "frame.mp4", image[None], fps=1)  # a one-frame video
    out = tmp_path / "features"
    code = main(
        [
            "extract",
            "--data",
            str(folder),
            "--encoder",
            "random:vit_micro",
            "--frames",
            "4",
            "--pool",
            "mean",
            "--out",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 3 and summary["videos"] == 3
    assert list(summary["skipped"]) == [str(folder / "corrupt.mp4")]
    with safe_open(out / "features.safetensors", "pt") as f:
        files = json.loads(f.metadata()["files"])
        index = f.get_tensor("video_index")
        assert f.get_tensor("features").shape == (3, 64)
    assert [files[i] for i in index] == [str(folder / n) for n in ("a.mp4", "frame.mp4", "nested/b.mp4")]


def test_extract_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    code = main(
        [
            "extract",
            "--data",
            str(tmp_path / "bad.mp4"),
            "--encoder",
            "random:vit_micro",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vjepa-world extract: error: none of the 1 input files could be decoded")
    code = main(
        [
            "extract",
            "--data",
            str(tmp_path / "bad.mp4"),
            "--encoder",
            str(tmp_path / "missing.pt"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_seeking_reads_the_same_frames_as_decoding_from_the_start(monkeypatch, name):
    path = packaged_footage() / name
    count = video_frame_count(path)
    wanted = [count - 60, count - 57, count - 31, count - 1]
    sought = read_clip_frames(path, wanted)
    monkeypatch.setattr(video_module, "SEEK_AFTER", 10**9)
    assert np.array_equal(sought, read_clip_frames(path, wanted))
