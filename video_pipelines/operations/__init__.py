"""The FFmpeg core: plain Python that turns media files into media files (no Dagster here)."""

from __future__ import annotations

from video_pipelines.operations.common import dimensions_for, reframe_video, replace_audio
from video_pipelines.operations.ffmpeg import ffmpeg_exe, probe, run_ffmpeg
from video_pipelines.operations.generate import generate_clip
from video_pipelines.operations.merge import MergeStrategy, merge_videos
from video_pipelines.operations.subtitles import add_subtitle_track, build_ass, burn_subtitles, escape_ass_text
from video_pipelines.speech.cues import Cue
from video_pipelines.speech.srt import parse_srt, to_srt, to_webvtt

__all__ = [
    "Cue",
    "MergeStrategy",
    "add_subtitle_track",
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
    "to_srt",
    "to_webvtt",
]
