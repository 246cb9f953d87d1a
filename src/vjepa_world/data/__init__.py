"""Video decoding, clip sampling and transforms."""

from .datasets import EpochSampler, VideoDataset, collate_clips
from .synthetic import TASKS, generate_clip, write_temporal_dataset
from .transforms import random_resized_crop
from .video import VideoDecodeError, find_media, read_clip_frames, video_frame_count

__all__ = [
    "TASKS",
    "EpochSampler",
    "VideoDataset",
    "VideoDecodeError",
    "collate_clips",
    "find_media",
    "generate_clip",
    "random_resized_crop",
    "read_clip_frames",
    "video_frame_count",
    "write_temporal_dataset",
]
