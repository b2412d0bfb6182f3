"""What the app holds while it serves, and who calls, as dependencies: one submission store and one Dagster
instance, opened at start-up (the store pools its connections; a DagsterInstance serves many threads), and
`Authorization: Bearer <api key>` -> the key's tenant, then its rate limit. The key is never logged or echoed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import dagster as dg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.settings import ApiSettings, TokenBuckets
from video_pipelines.deployment.connection import open_deployment
from video_pipelines.executions import Caller
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
    with open_deployment() as (instance, store):
        limiter = TokenBuckets(settings.rate_limit) if settings.rate_limit is not None else None
        yield ApiState(settings, store, instance, limiter)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(api_state)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key made with `video-pipelines api-keys create --name NAME [--tenant T]`.",
)
MISSING_KEY = (
    "this call needs an API key: send Authorization: Bearer <key> "
    "(keys are made with `video-pipelines api-keys create --name NAME`)"
)
BAD_KEY = "the API key is not valid (unknown or revoked)"


def authenticated(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller of an `/api/...` request: its key's tenant (raises the 401 or 429 problem)."""
    if credentials is None or not credentials.credentials:
        raise ApiProblem(401, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
    key = state.keys.authenticate(credentials.credentials)
    if key is None:
        raise ApiProblem(401, BAD_KEY, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if state.limiter is not None:
        wait = state.limiter.take(key.key_id)
        if wait is not None:
            limit = state.limiter.limit
            raise ApiProblem(
                429,
                f"this API key made more than {limit.requests} requests in {limit.period_seconds:g} s; "
                f"try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
    return Caller(key.tenant)


CallerDep = Annotated[Caller, Depends(authenticated)]
