"""The model each remote provider uses when a node names none, per operation: its adapter's default, and the model
pricing prices such a node as. Kept apart from the adapters, so pricing a plan imports no HTTP client."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_MODELS: Mapping[tuple[str, str], str] = {
    ("generateVideo", "google-cloud"): "veo-2.0-generate-001",
    # Kling 1.6 takes the plan's duration and aspect ratio (minimax/video-01 ignores both).
    ("generateVideo", "replicate"): "kwaivgi/kling-v1.6-standard",
    ("generateVideo", "fal"): "fal-ai/kling-video/v1.6/standard/text-to-video",
    ("lipSync", "replicate"): "kwaivgi/kling-lip-sync",
    ("lipSync", "fal"): "fal-ai/sync-lipsync",
    ("addSubtitles", "replicate"): (
        "vaibhavs10/incredibly-fast-whisper:3ab86df6c8f54c11309d4d1f930ac292bad43ace52d10c80d87eb258b3c9f79c"
    ),
    ("addSubtitles", "fal"): "fal-ai/whisper",
}
