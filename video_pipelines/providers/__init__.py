"""Providers that generate clips and lip-sync them: `local` (FFmpeg, offline) and remote adapters.

A provider is chosen per node by its `provider` param. `local` renders real media with
FFmpeg and needs nothing; remote providers (Replicate, fal, Google Vertex) are adapters
behind the same two protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from video_pipelines.errors import ProviderError
from video_pipelines.operations.video import generate_clip, replace_audio


class VideoGenerator(Protocol):
    name: str

    def generate(
        self,
        out: Path,
        *,
        prompt: str,
        duration: float,
        width: int,
        height: int,
        seed: int,
        model: str | None,
        timeout: float | None,
    ) -> None:
        """Write a clip of `duration` seconds at `width`x`height` to `out`."""


class LipSyncer(Protocol):
    name: str

    def lip_sync(self, video: Path, audio: Path, out: Path, *, model: str | None, timeout: float | None) -> None:
        """Write `video` with its speech synchronised to `audio` to `out`."""


class LocalProvider:
    """Renders a real clip with FFmpeg (gradient, prompt text, tone); lip-sync replaces the audio track."""

    name = "local"

    def generate(
        self,
        out: Path,
        *,
        prompt: str,
        duration: float,
        width: int,
        height: int,
        seed: int,
        model: str | None,
        timeout: float | None,
    ) -> None:
        generate_clip(out, prompt=prompt, duration=duration, width=width, height=height, seed=seed, timeout=timeout)

    def lip_sync(self, video: Path, audio: Path, out: Path, *, model: str | None, timeout: float | None) -> None:
        replace_audio(video, audio, out, timeout=timeout)


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
