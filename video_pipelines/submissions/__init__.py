"""Submissions and the tables beside them: plans kept until a sensor launches them, API keys, attempts,
node results, outcomes. Plain Python: no Dagster import."""

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
