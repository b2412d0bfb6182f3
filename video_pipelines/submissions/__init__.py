"""Submissions: plans sent through `video-pipelines submit`, kept until a sensor launches them.

- `store` — `SubmissionStore`, the table of submissions (PostgreSQL or SQLite) and its
  states: PENDING until launched, rejected or canceled; idempotency keys.
- `api_keys` — `ApiKeys`: the HTTP API's keys, stored as SHA-256 hashes, each with its tenant.
- `attempts` — `AttemptStore`: an execution's runs after its first one (resumed or retried),
  pending until launched.
- `node_results` — `NodeResultIndex`: completed nodes' results by (tenant, lineage), reused by
  later executions, and the claims that make two executions compute one lineage once.
- `outcomes` — `ExecutionOutcomes`: when each execution first started and how it first ended,
  claimed once by whoever observes it (counted and traced once), and the caller's span its
  span is a child of.
- `crypto` — webhook secrets encrypted at rest (Fernet) and where the key comes from.
- `schema` — the tables and the versioned migration runner.
- `errors` — `SubmissionStoreError`, `SecretKeyError` and `IdempotencyKeyReused`.

Plain Python: no Dagster import (the PostgreSQL URL helper loads lazily, only for PostgreSQL).
"""

from __future__ import annotations

from video_pipelines.errors import IdempotencyKeyReused, SecretKeyError, SubmissionStoreError
from video_pipelines.submissions.api_keys import ApiKey, ApiKeys, check_tenant
from video_pipelines.submissions.attempts import AttemptReason, AttemptState, AttemptStore, RunAttempt
from video_pipelines.submissions.crypto import KEY_FILE_NAME, SECRET_KEY_ENV
from video_pipelines.submissions.node_results import CachedNode, NodeClaim, NodeResultIndex
from video_pipelines.submissions.outcomes import ExecutionOutcomes, OutcomeTally
from video_pipelines.submissions.schema import DEFAULT_TENANT, SCHEMA_VERSION
from video_pipelines.submissions.store import (
    DATABASE_FILE_NAME,
    PRIORITIES,
    Submission,
    SubmissionState,
    SubmissionStore,
    execution_created_at,
    new_execution_id,
)

__all__ = [
    "DATABASE_FILE_NAME",
    "DEFAULT_TENANT",
    "KEY_FILE_NAME",
    "PRIORITIES",
    "SCHEMA_VERSION",
    "SECRET_KEY_ENV",
    "ApiKey",
    "ApiKeys",
    "AttemptReason",
    "AttemptState",
    "AttemptStore",
    "CachedNode",
    "ExecutionOutcomes",
    "IdempotencyKeyReused",
    "NodeClaim",
    "NodeResultIndex",
    "OutcomeTally",
    "RunAttempt",
    "SecretKeyError",
    "Submission",
    "SubmissionState",
    "SubmissionStore",
    "SubmissionStoreError",
    "check_tenant",
    "execution_created_at",
    "new_execution_id",
]
