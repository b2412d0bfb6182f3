"""The FFmpeg core: plain Python that turns media files into media files (no Dagster here)."""

from __future__ import annotations

from video_pipelines.operations.ffmpeg import MediaInfo, ffmpeg_exe, probe, run_ffmpeg, sha256_file
from video_pipelines.operations.subtitles import Cue, build_ass, escape_ass_text, parse_srt
from video_pipelines.operations.video import (
    ASPECT_RATIOS,
    MergeStrategy,
    burn_subtitles,
    dimensions_for,
    generate_clip,
    merge_videos,
    reframe_video,
    replace_audio,
)

__all__ = [
    "ASPECT_RATIOS",
    "Cue",
    "MediaInfo",
    "MergeStrategy",
    "build_ass",
    "burn_subtitles",
    "dimensions_for",
    "escape_ass_text",
    "ffmpeg_exe",
    "generate_clip",
    "merge_videos",
    "parse_srt",
    "probe",
    "reframe_video",
    "replace_audio",
    "run_ffmpeg",
    "sha256_file",
]
