"""Video decoding, clip sampling and transforms."""

from .video import VideoDecodeError, find_media, read_clip_frames, video_frame_count

__all__ = ["VideoDecodeError", "find_media", "read_clip_frames", "video_frame_count"]
