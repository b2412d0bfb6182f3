"""One typed resource per remote provider: its endpoint, default models and its credential's variable.

The credential is a variable *name*, not a `dg.EnvVar`: one op needs every provider's resource, and
Dagster fails a run whose `EnvVar` is unset, even for a provider it never calls.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from video_pipelines.errors import ProviderError
from video_pipelines.net import AllowedHosts
from video_pipelines.providers import LipSyncer, RemoteFactory, SpeechTranscriber, VideoGenerator, credential
from video_pipelines.providers import fal as fal_api
from video_pipelines.providers import replicate as replicate_api
from video_pipelines.providers import vertex as vertex_api


def _keyed_factory(
    provider: type[replicate_api.ReplicateProvider | fal_api.FalProvider],
    name: str,
    credential_env: str,
    base_url: str,
    models: ReplicateResource | FalResource,
) -> RemoteFactory:

    def make(allowed: AllowedHosts) -> VideoGenerator | LipSyncer | SpeechTranscriber:
        return provider(
            credential(name, credential_env),
            base_url=base_url,
            video_model=models.video_model,
            lipsync_model=models.lipsync_model,
            speech_model=models.speech_model,
            allowed=allowed,
            poll_interval=models.poll_interval_seconds,
        )

    return make


class ReplicateResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Replicate's predictions API (generateVideo, lipSync, addSubtitles from speech)."""

    token_env: str = Field(default="REPLICATE_API_TOKEN", description="environment variable holding the API token")
    base_url: str | None = Field(default=None, description="default: $REPLICATE_API_BASE_URL, else the public API")
    video_model: str = replicate_api.DEFAULT_VIDEO_MODEL
    lipsync_model: str = replicate_api.DEFAULT_LIPSYNC_MODEL
    speech_model: str = Field(default=replicate_api.DEFAULT_SPEECH_MODEL, description="speech-to-text (captions)")
    poll_interval_seconds: float = Field(default=2.0, gt=0)

    def factory(self) -> RemoteFactory:
        base_url = self.base_url or os.environ.get("REPLICATE_API_BASE_URL") or replicate_api.DEFAULT_BASE_URL
        return _keyed_factory(replicate_api.ReplicateProvider, "replicate", self.token_env, base_url, self)


class FalResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """fal's queue API (generateVideo, lipSync, addSubtitles from speech)."""

    key_env: str = Field(default="FAL_KEY", description="environment variable holding the API key")
    base_url: str | None = Field(default=None, description="default: $FAL_QUEUE_BASE_URL, else the public queue")
    video_model: str = fal_api.DEFAULT_VIDEO_MODEL
    lipsync_model: str = fal_api.DEFAULT_LIPSYNC_MODEL
    speech_model: str = Field(default=fal_api.DEFAULT_SPEECH_MODEL, description="speech-to-text (captions)")
    poll_interval_seconds: float = Field(default=2.0, gt=0)

    def factory(self) -> RemoteFactory:
        base_url = self.base_url or os.environ.get("FAL_QUEUE_BASE_URL") or fal_api.DEFAULT_BASE_URL
        return _keyed_factory(fal_api.FalProvider, "fal", self.key_env, base_url, self)


class GoogleVertexResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Google Vertex AI video generation with Veo (generateVideo)."""

    credentials_env: str = Field(
        default="GOOGLE_APPLICATION_CREDENTIALS", description="environment variable with the service-account JSON path"
    )
    project: str | None = Field(default=None, description="default: $GOOGLE_CLOUD_PROJECT, else the key's project")
    location: str | None = Field(default=None, description="default: $GOOGLE_CLOUD_LOCATION, else us-central1")
    base_url: str | None = Field(default=None, description="default: $GOOGLE_VERTEX_BASE_URL, else the regional API")
    model: str = vertex_api.DEFAULT_MODEL
    poll_interval_seconds: float = Field(default=5.0, gt=0)

    def factory(self) -> RemoteFactory:
        def make(allowed: AllowedHosts) -> VideoGenerator | LipSyncer | SpeechTranscriber:
            key_file = Path(credential("google-cloud", self.credentials_env))
            if not key_file.is_file():
                raise ProviderError(f"provider 'google-cloud': {self.credentials_env} names no readable file")
            location = self.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or vertex_api.DEFAULT_LOCATION
            return vertex_api.VertexVeoProvider(
                key_file,
                project=self.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None,
                location=location,
                base_url=self.base_url or os.environ.get("GOOGLE_VERTEX_BASE_URL") or None,
                model=self.model,
                allowed=allowed,
                poll_interval=self.poll_interval_seconds,
            )

        return make
