"""Dagster resources: the deployment's artifact storage and media access policy."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.net import AllowedHosts, parse_allowed_hosts
from video_pipelines.operations.checks import BLOCKING_CHECKS_ENV, CheckName, parse_blocking
from video_pipelines.storage import STORAGE_URL_ENV, ArtifactStore, store_from_url
from video_pipelines.submissions import SubmissionStore

ALLOWED_HOSTS_ENV = "VIDEO_PIPELINES_ALLOWED_HOSTS"


class ArtifactStorage(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where node videos are stored: a local folder or S3 (content-addressed keys)."""

    url: str | None = Field(
        default=None,
        description=f"file:///abs/dir or s3://bucket/prefix; unset = ${STORAGE_URL_ENV}, else $DAGSTER_HOME/artifacts",
    )

    def store(self) -> ArtifactStore:
        # Read at run time, not import time, so a deployment can change it without a code change.
        default_root = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve() / "artifacts"
        return store_from_url(self.url or os.environ.get(STORAGE_URL_ENV), default_root=default_root)


class MediaPolicy(dg.ConfigurableResource):  # type: ignore[type-arg]
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


class SubmissionStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The store of submitted plans: $VIDEO_PIPELINES_DATABASE_URL, else SQLite in DAGSTER_HOME."""

    _store: SubmissionStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # One store (one engine and its connection pool) per sensor evaluation or run, closed after it.
        self._store = SubmissionStore.from_env()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def store(self) -> SubmissionStore:
        if self._store is None:
            raise SubmissionStoreError("the submission store is open only while a sensor or run uses the resource")
        return self._store
