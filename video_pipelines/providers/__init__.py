"""Providers that generate clips, lip-sync and transcribe: `local` and remote adapters behind `base.py`'s protocols."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import cast

from video_pipelines.errors import ProviderError
from video_pipelines.net import AllowedHosts
from video_pipelines.providers.base import (
    GenerationRequest,
    JobLedger,
    LipSyncer,
    LipSyncRequest,
    NoLedger,
    ProviderJobs,
    SpeechTranscriber,
    TranscriptionRequest,
    VideoGenerator,
)

__all__ = [
    "GenerationRequest",
    "JobLedger",
    "LipSyncRequest",
    "LipSyncer",
    "NoLedger",
    "ProviderJobs",
    "RemoteFactory",
    "SpeechTranscriber",
    "TranscriptionRequest",
    "VideoGenerator",
    "credential",
    "lip_syncer",
    "provider_jobs",
    "speech_transcriber",
    "video_generator",
]


REMOTE_PROVIDERS = {
    "replicate": "REPLICATE_API_TOKEN",
    "fal": "FAL_KEY",
    "google-cloud": "GOOGLE_APPLICATION_CREDENTIALS",
}


def credential(name: str, variable: str | None = None) -> str:
    """The credential of provider `name` from the environment variable `variable` (default: the usual one)."""
    variable = variable or REMOTE_PROVIDERS.get(name)
    if variable is None:
        raise ProviderError(f"unknown provider '{name}' (expected local, {', '.join(REMOTE_PROVIDERS)})")
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ProviderError(
            f"provider '{name}' is not configured in this deployment: set {variable} where runs execute, "
            "or use provider 'local'"
        )
    return value


RemoteFactory = Callable[[AllowedHosts], "VideoGenerator | LipSyncer | SpeechTranscriber"]


def _configured(name: str) -> RemoteFactory:
    credential(name)  # a clear error when the provider is unknown or not configured here
    # Imported when a node first calls one: the others' dependencies stay unloaded.
    if name == "replicate":
        from video_pipelines.providers.replicate import ReplicateProvider

        return ReplicateProvider.from_env
    if name == "fal":
        from video_pipelines.providers.fal import FalProvider

        return FalProvider.from_env
    from video_pipelines.providers.vertex import VertexVeoProvider

    return VertexVeoProvider.from_env


def _provider(
    name: str, allowed: AllowedHosts | None, remote: Mapping[str, RemoteFactory] | None, *, does: str, refusal: str
) -> object:
    if name == "local":
        # Imported when a node first calls it, as the remote ones: it loads FFmpeg's operations, which pricing does not.
        from video_pipelines.providers.local import LocalProvider

        return LocalProvider()
    # Credentials and endpoints are read when a node runs (never at import, never into run config),
    # so a deployment can add a provider by setting its variables.
    factory = remote[name] if remote is not None and name in remote else _configured(name)
    provider = factory(allowed or AllowedHosts.from_env())
    if not hasattr(provider, does):
        raise ProviderError(f"provider '{name}' {refusal}")
    return provider


def video_generator(
    name: str, *, allowed: AllowedHosts | None = None, remote: Mapping[str, RemoteFactory] | None = None
) -> VideoGenerator:
    """The generation provider called `name`; `remote` maps names to configured factories, else from the env."""
    return cast(VideoGenerator, _provider(name, allowed, remote, does="generate", refusal="does not generate videos"))


def lip_syncer(
    name: str, *, allowed: AllowedHosts | None = None, remote: Mapping[str, RemoteFactory] | None = None
) -> LipSyncer:
    """The lip-sync provider called `name`; ProviderError when it is not configured."""
    refusal = "does not lip-sync (use replicate, fal or local)"
    return cast(LipSyncer, _provider(name, allowed, remote, does="lip_sync", refusal=refusal))


def speech_transcriber(
    name: str, *, allowed: AllowedHosts | None = None, remote: Mapping[str, RemoteFactory] | None = None
) -> SpeechTranscriber:
    """The speech-to-text provider called `name` (`local`: the offline recogniser)."""
    refusal = "does not transcribe speech (use local, replicate or fal)"
    return cast(SpeechTranscriber, _provider(name, allowed, remote, does="transcribe", refusal=refusal))


def provider_jobs(name: str, *, allowed: AllowedHosts | None = None) -> ProviderJobs:
    """Provider `name`'s jobs, followed and canceled without their run (a parked node's)."""
    refusal = "cannot follow a job without the run that started it"
    return cast(ProviderJobs, _provider(name, allowed, None, does="job_finished", refusal=refusal))
