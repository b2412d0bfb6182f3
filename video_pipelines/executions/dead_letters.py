"""The dead letters: a caller's failed executions since a time, and retrying them in bulk with `retry`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from video_pipelines.errors import ExecutionError
from video_pipelines.executions.lifecycle import Caller, retry
from video_pipelines.executions.records import RunRecords
from video_pipelines.executions.tenancy import MAX_PAGE, list_executions
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import ExecutionState

# The states a bulk retry takes: those `retry` runs again.
RETRIABLE = (ExecutionState.FAILED, ExecutionState.CANCELED)


@dataclass(frozen=True)
class BulkRetry:
    """What a bulk retry did: the executions it retried, and those it could not, with why (never ran)."""

    retried: list[str]
    skipped: dict[str, str]

    def to_wire(self) -> dict[str, Any]:
        return {
            "retried": self.retried,
            "skipped": [{"executionId": execution_id, "reason": why} for execution_id, why in self.skipped.items()],
        }


def retry_all(
    caller: Caller,
    records: RunRecords,
    store: SubmissionStore,
    *,
    status: ExecutionState = ExecutionState.FAILED,
    since: datetime | None = None,
    limit: int = MAX_PAGE,
) -> BulkRetry:
    """Retry up to `limit` (1 to 100) of the caller's newest executions in `status` since `since`, each as
    `video-pipelines retry` would (completed nodes reused). A second call finds them pending: none runs twice."""
    if status not in RETRIABLE:
        raise ExecutionError(f"status must be failed or canceled to retry; got {status.value}")
    found, _ = list_executions(caller, records, store, status=status.value, limit=limit, since=since)
    retried: list[str] = []
    skipped: dict[str, str] = {}
    for execution in found:
        try:
            retry(records, store, execution.execution_id)
        except ExecutionError as exc:  # one that never ran (rejected, canceled before its launch)
            skipped[execution.execution_id] = str(exc)
        else:
            retried.append(execution.execution_id)
    return BulkRetry(retried, skipped)
