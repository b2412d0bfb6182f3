"""What an execution's start and end make happen once: its counts in the metrics and its span.

Several observers see a start or an end; the one that claims it counts it. A failed claim is not
retried by its observer (Dagster moves a run-status sensor's cursor past a run even when the sensor
raises), so the `webhook_deliveries` sensor claims again what ended within `RECENT_SECONDS`
(`sweep_run_ends`, `sweep_submission_ends`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import ExecutionStatus, execution_status
from video_pipelines.executions.traces import record_execution_span
from video_pipelines.submissions import AttemptStore, ExecutionOutcomes, SubmissionStore
from video_pipelines.telemetry.tracing import best_effort
from video_pipelines.vocabulary import ExecutionState

_log = logging.getLogger(__name__)


def record_start(store: SubmissionStore, execution_id: str, started_at: datetime | None = None) -> bool:
    """Count the start of an execution whose run started (its first); True for the one observer that claims it."""
    return ExecutionOutcomes(store).claim_start(execution_id, started_at or datetime.now(UTC))


def record_run_end(records: RunRecords, store: SubmissionStore, run: RunView) -> bool:
    """Claim the start, the attempt's outcome and the end that `run`'s end makes happen; True when the end was
    claimed here. Claims are read first, so later observers compute no status."""
    outcomes = ExecutionOutcomes(store)
    claimed = outcomes.claimed(run.execution_id)
    if not claimed.started and run.started_at is not None:
        record_start(store, run.execution_id, datetime.fromtimestamp(run.started_at, UTC))
    attempts = AttemptStore(store)
    attempt_due = run.attempt > 1 and run.state.is_finished and attempts.outcome(run.execution_id, run.attempt) is None
    if claimed.ended and not attempt_due:
        return False
    status = execution_status(records, store, run.execution_id)
    if attempt_due:
        attempts.record_outcome(run.execution_id, run.attempt, _attempt_outcome(status, run).value)
    return not claimed.ended and _claim_end(records, store, status)


def _attempt_outcome(status: ExecutionStatus, run: RunView) -> ExecutionState:
    """How an attempt's run ended: as the execution's status when it ended the execution, else as the run did."""
    if status.run_id == run.run_id and status.is_terminal:
        return status.state
    return run.state.execution_state


def record_end(records: RunRecords, store: SubmissionStore, execution_id: str) -> bool:
    """Claim the end of an ended execution and record its span; True for the one observer that claims it."""
    if ExecutionOutcomes(store).claimed(execution_id).ended:
        return False
    return _claim_end(records, store, execution_status(records, store, execution_id))


def _claim_end(records: RunRecords, store: SubmissionStore, status: ExecutionStatus) -> bool:
    if not status.is_terminal:
        return False
    execution_id = status.execution_id
    submission = store.get(execution_id)
    runs = records.execution_runs(execution_id)
    if runs and runs[-1].ended_at is not None:
        ended: datetime = datetime.fromtimestamp(runs[-1].ended_at, UTC)
    else:
        ended = submission.updated_at if submission is not None else datetime.now(UTC)
    outcomes = ExecutionOutcomes(store)
    if not outcomes.claim_end(execution_id, status.state.value, ended):
        return False
    record_execution_span(outcomes, status, submission, runs, ended_at=ended)
    return True


def sweep_run_ends(records: RunRecords, store: SubmissionStore, runs: list[RunView]) -> list[str]:
    """`record_run_end` for each of these runs; the ids of those whose claims failed. Failures are logged."""
    failed: list[str] = []
    for run in runs:
        try:
            record_run_end(records, store, run)
        except Exception:
            _log.warning(f"{run.execution_id}: the end of run {run.run_id} is not counted yet", exc_info=True)
            failed.append(run.run_id)
    return failed


def sweep_submission_ends(records: RunRecords, store: SubmissionStore, since: datetime) -> None:
    """`record_end` for submissions ended before they ran since `since` with no end claimed. Failures are logged."""
    try:
        for execution_id in ExecutionOutcomes(store).unclaimed_ends_without_run(since, limit=100):
            record_end(records, store, execution_id)
    except Exception:
        _log.warning("the ends of rejected or canceled submissions are not counted yet", exc_info=True)


@best_effort
def record_end_quietly(records: RunRecords, store: SubmissionStore, execution_id: str) -> None:
    """`record_end` for an observer that must not fail for it (a cancel, a rejection): an error is logged."""
    record_end(records, store, execution_id)
