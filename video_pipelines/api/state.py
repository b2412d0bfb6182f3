"""What the app holds while it serves: one submission store and one Dagster instance, opened at start-up
(the store pools its connections; a DagsterInstance serves many threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
from fastapi import Request

from video_pipelines.api.rate_limit import TokenBuckets
from video_pipelines.api.settings import ApiSettings
from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.orchestration.resources.artifacts import ArtifactStorage
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.storage import ArtifactStore
from video_pipelines.submissions import ApiKeys, SubmissionStore


@dataclass
class ApiState:
    """The deployment the API serves, and its per-process state (the rate limit's buckets)."""

    settings: ApiSettings
    store: SubmissionStore
    instance: dg.DagsterInstance
    limiter: TokenBuckets | None
    keys: ApiKeys = field(init=False)
    records: DagsterRunRecords = field(init=False)
    _artifacts: ArtifactStore | None = field(default=None, init=False, repr=False)
    _artifacts_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = ApiKeys(self.store)
        self.records = DagsterRunRecords(self.instance)

    def artifacts(self) -> ArtifactStore:
        """The deployment's artifact storage, made on first use: a bad storage URL makes `/health` down, not the API."""
        with self._artifacts_lock:
            if self._artifacts is None:
                self._artifacts = ArtifactStorage().store()
            return self._artifacts


@contextmanager
def open_state(settings: ApiSettings) -> Iterator[ApiState]:
    """Open the environment's deployment (as every door does: DAGSTER_HOME, the database URL) for serving."""
    home = prepare_dagster_home()
    store = SubmissionStore.from_env(home)
    try:
        with dg.DagsterInstance.get() as instance:
            limiter = TokenBuckets(settings.rate_limit) if settings.rate_limit is not None else None
            yield ApiState(settings, store, instance, limiter)
    finally:
        store.close()


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state
