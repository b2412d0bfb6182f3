"""The life-cycle calls as a caller may make them: a tenant sees, cancels and lists only its own.

To a tenant, another tenant's execution is exactly a missing one (same `ExecutionNotFound`), so an
answer never tells that the id exists. Operator doors pass `OPERATOR`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from video_pipelines.errors import ExecutionNotFound, UsageError
from video_pipelines.executions.lifecycle import Caller, cancel, execution_tenant, retry
from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import ExecutionStatus, execution_status, run_status, submission_status
from video_pipelines.submissions import Submission, SubmissionStore
from video_pipelines.vocabulary import ExecutionState

_Guarded = Callable[[Caller, RunRecords, SubmissionStore, str], ExecutionStatus]
MAX_PAGE = 100
# Submissions read per query while a status filter skips the ones that do not match.
_SCAN_BATCH = 100


def require_visible(caller: Caller, records: RunRecords, store: SubmissionStore, execution_id: str) -> None:
    """ExecutionNotFound unless `caller` may see `execution_id`; reads its owner, not its status."""
    if not caller.may_see(execution_tenant(records, store, execution_id)):
        raise ExecutionNotFound(f"no execution {execution_id}")


def _visible(call: Callable[[RunRecords, SubmissionStore, str], ExecutionStatus]) -> _Guarded:
    """`call` on an execution `caller` may see; ExecutionNotFound, and no change, otherwise."""

    def guarded(caller: Caller, records: RunRecords, store: SubmissionStore, execution_id: str) -> ExecutionStatus:
        if not caller.is_operator:  # for an operator, `call` raises ExecutionNotFound for a missing id itself
            require_visible(caller, records, store, execution_id)
        return call(records, store, execution_id)

    return guarded


status_for = _visible(execution_status)
cancel_for = _visible(cancel)
retry_for = _visible(retry)


def _wanted_state(status: str | None) -> ExecutionState | None:
    if status is None:
        return None
    try:
        return ExecutionState(status)
    except ValueError:
        names = ", ".join(state.value for state in ExecutionState)
        raise UsageError(f"status must be one of {names}; got {status!r}") from None


def last_change(submission: Submission, run: RunView | None) -> datetime:
    """When an execution last changed state: its newest run's end (or start), else its submission's last move."""
    moment = (run.ended_at or run.started_at) if run is not None else None
    return datetime.fromtimestamp(moment, UTC) if moment is not None else submission.updated_at


def list_executions(
    caller: Caller,
    records: RunRecords,
    store: SubmissionStore,
    *,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    since: datetime | None = None,
) -> tuple[list[ExecutionStatus], str | None]:
    """Up to `limit` (1 to 100) of the caller's executions, newest first, and the next page's cursor; with
    `since`, only those whose state last changed then or later (a failure since then: the dead-letter view).

    Execution ids sort in creation order, so a page's last id is a stable cursor. Raises UsageError.
    """
    wanted = _wanted_state(status)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be an integer from 1 to {MAX_PAGE}; got {limit!r}")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is UTC, as every time we answer
    page: list[ExecutionStatus] = []
    before = cursor or None
    # Without a filter every submission is a match: read one more than a page, to know if another follows.
    batch = limit + 1 if wanted is None and since is None else _SCAN_BATCH
    while True:
        submissions = store.newest(caller.tenant, limit=batch, before=before)
        for submission in submissions:
            if wanted is None and since is None and len(page) == limit:
                return page, page[-1].execution_id
            run = records.find_run(submission.execution_id)
            if since is not None and last_change(submission, run) < since:
                continue
            found = run_status(records, run, store=store) if run is not None else submission_status(submission)
            if wanted is not None and found.state is not wanted:
                continue
            if len(page) == limit:
                return page, page[-1].execution_id
            page.append(found)
        if len(submissions) < batch:
            return page, None
        before = submissions[-1].execution_id
