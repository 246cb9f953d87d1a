"""Video decoding, clip sampling and transforms."""

from .datasets import EpochSampler, VideoDataset, collate_clips
from .transforms import random_resized_crop
from .video import VideoDecodeError, find_media, read_clip_frames, video_frame_count

__all__ = [
    "EpochSampler",
    "VideoDataset",
    "VideoDecodeError",
    "collate_clips",
    "find_media",
    "random_resized_crop",
    "read_clip_frames",
    "video_frame_count",
]
