"""Dagster resources: the deployment's artifact storage and media access policy, the submission store, and one
typed resource per remote provider (its endpoint, default models and its credential's variable).

A provider's credential is a variable *name*, not a `dg.EnvVar`: one op needs every provider's resource,
and Dagster fails a run whose `EnvVar` is unset, even for a provider it never calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field, PrivateAttr

from video_pipelines.errors import ProviderError, SubmissionStoreError
from video_pipelines.net import AllowedHosts, parse_allowed_hosts
from video_pipelines.operations.checks import BLOCKING_CHECKS_ENV, CheckName, parse_blocking
from video_pipelines.providers import LipSyncer, RemoteFactory, SpeechTranscriber, VideoGenerator, credential
from video_pipelines.providers import fal as fal_api
from video_pipelines.providers import replicate as replicate_api
from video_pipelines.providers import vertex as vertex_api
from video_pipelines.providers.keyed import ApiKeyProvider
from video_pipelines.storage import STORAGE_URL_ENV, ArtifactStore, store_from_url
from video_pipelines.submissions import SubmissionStore

ALLOWED_HOSTS_ENV = "VIDEO_PIPELINES_ALLOWED_HOSTS"


class ArtifactStorage(dg.ConfigurableResource["ArtifactStorage"]):
    """Where node videos are stored: a local folder or S3 (content-addressed keys)."""

    url: str | None = Field(
        default=None,
        description=f"file:///abs/dir or s3://bucket/prefix; unset = ${STORAGE_URL_ENV}, else $DAGSTER_HOME/artifacts",
    )

    def store(self) -> ArtifactStore:
        # Read at run time, not import time, so a deployment can change it without a code change.
        default_root = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve() / "artifacts"
        return store_from_url(self.url or os.environ.get(STORAGE_URL_ENV), default_root=default_root)


class MediaPolicy(dg.ConfigurableResource["MediaPolicy"]):
    """Limits on the media a node may fetch and how long an operation may run."""

    allowed_hosts: str | None = Field(
        default=None, description=f"hosts/CIDRs allowed although private; unset = ${ALLOWED_HOSTS_ENV}"
    )
    operation_timeout_seconds: float = Field(default=1800.0, gt=0)
    blocking_checks: str | None = Field(
        default=None,
        description="media checks that fail their node: names separated by commas "
        f"({', '.join(CheckName)}), 'all' or 'none'; unset = ${BLOCKING_CHECKS_ENV}, else 'streams'",
    )

    def hosts(self) -> AllowedHosts:
        if self.allowed_hosts is not None:
            return parse_allowed_hosts(self.allowed_hosts)
        return AllowedHosts.from_env()

    def blocking(self) -> frozenset[CheckName]:
        return parse_blocking(
            self.blocking_checks if self.blocking_checks is not None else os.environ.get(BLOCKING_CHECKS_ENV)
        )


class SubmissionStoreResource(dg.ConfigurableResource["SubmissionStoreResource"]):
    """The store of submitted plans: $VIDEO_PIPELINES_DATABASE_URL, else SQLite in DAGSTER_HOME."""

    _store: SubmissionStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # The process's store, open for its life: sensors tick every second and runs follow each other.
        self._store = SubmissionStore.shared()

    def store(self) -> SubmissionStore:
        if self._store is None:
            raise SubmissionStoreError("the submission store is open only while a sensor or run uses the resource")
        return self._store


class KeyedProviderResource(dg.ConfigurableResource["KeyedProviderResource"]):
    """A provider called with an API key: its endpoint, default models and its key's variable. An unset model or
    endpoint is the provider's own (its module's `DEFAULT_*`; the endpoint also from its base-URL variable)."""

    provider: ClassVar[type[ApiKeyProvider]]
    base_url: str | None = Field(default=None, description="default: the provider's base-URL variable, else its API")
    video_model: str | None = Field(default=None, description="default: the provider's")
    lipsync_model: str | None = Field(default=None, description="default: the provider's")
    speech_model: str | None = Field(default=None, description="speech-to-text (captions); default: the provider's")
    poll_interval_seconds: float = Field(default=2.0, gt=0)

    def credential_env(self) -> str:
        raise NotImplementedError

    def factory(self) -> RemoteFactory:
        provider, name, variable = self.provider, self.provider.name, self.credential_env()
        base_url = self.base_url or os.environ.get(provider.base_url_variable) or provider.default_base_url

        def make(allowed: AllowedHosts) -> VideoGenerator | LipSyncer | SpeechTranscriber:
            return provider(
                credential(name, variable),
                base_url=base_url,
                video_model=self.video_model,
                lipsync_model=self.lipsync_model,
                speech_model=self.speech_model,
                allowed=allowed,
                poll_interval=self.poll_interval_seconds,
            )

        return make


class ReplicateResource(KeyedProviderResource):
    """Replicate's predictions API (generateVideo, lipSync, addSubtitles from speech)."""

    provider = replicate_api.ReplicateProvider
    token_env: str = Field(default="REPLICATE_API_TOKEN", description="environment variable holding the API token")

    def credential_env(self) -> str:
        return self.token_env


class FalResource(KeyedProviderResource):
    """fal's queue API (generateVideo, lipSync, addSubtitles from speech)."""

    provider = fal_api.FalProvider
    key_env: str = Field(default="FAL_KEY", description="environment variable holding the API key")

    def credential_env(self) -> str:
        return self.key_env


class GoogleVertexResource(dg.ConfigurableResource["GoogleVertexResource"]):
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
