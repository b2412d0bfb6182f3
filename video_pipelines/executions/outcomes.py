"""What an execution's start and end make happen once: its counts in the metrics and its span.

A start or an end is seen by several observers (see `submissions.outcomes`): the run-status
sensors (`webhook_on_started`, and the ended-run sensors) for a run, the plan sensor for a
submission it rejects, `cancel` for one canceled before it ran or while its resume was due.
Each calls these; the one that claims the start or the end counts it, and for an end records
the execution's span (`traces.record_execution_span`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import execution_status
from video_pipelines.executions.traces import record_execution_span
from video_pipelines.submissions import AttemptStore, ExecutionOutcomes, SubmissionStore
from video_pipelines.telemetry.trace_context import execution_context
from video_pipelines.telemetry.tracing import best_effort


def record_start(store: SubmissionStore, execution_id: str) -> bool:
    """Count the start of an execution whose run started (its first); True for the one observer that claims it."""
    return ExecutionOutcomes(store).claim_start(execution_id, datetime.now(UTC))


def record_run_end(records: RunRecords, store: SubmissionStore, run: RunView) -> bool:
    """What the end of `run` makes happen: the outcome of its attempt (a resume's or a retry's run), and the
    execution's end when it is one (`record_end`). True when the execution's end was claimed here."""
    if run.attempt > 1 and run.state.is_finished:
        AttemptStore(store).record_outcome(run.execution_id, run.attempt, run.state.execution_state.value)
    return record_end(records, store, run.execution_id)


def record_end(records: RunRecords, store: SubmissionStore, execution_id: str) -> bool:
    """Claim the end of an execution that has ended and record its span; True for the one observer that claims it.

    The claim (`ExecutionOutcomes.claim_end`) makes the end counted once and its span exported
    once, however many observe it. An execution that has not ended claims nothing: a run whose
    worker was lost leaves it `processing` while its resume is due, so only the resumed run's
    end is its end. Raises SubmissionStoreError when the claim cannot be written (an observer
    that retries, such as a sensor's tick, claims it then).
    """
    status = execution_status(records, store, execution_id)
    if not status.is_terminal:
        return False
    submission = store.get(execution_id)
    runs = records.execution_runs(execution_id)
    if runs and runs[-1].ended_at is not None:
        ended: datetime = datetime.fromtimestamp(runs[-1].ended_at, UTC)
    else:
        ended = submission.updated_at if submission is not None else datetime.now(UTC)
    outcomes = ExecutionOutcomes(store)
    if not outcomes.claim_end(execution_id, status.state.value, ended):
        return False
    started: datetime | float = ended
    if submission is not None:
        started = submission.created_at
    elif runs and runs[0].started_at is not None:
        started = runs[0].started_at
    record_execution_span(
        outcomes,
        execution_context(submission.traceparent if submission is not None else None, execution_id),
        status,
        started_at=started,
        ended_at=ended,
        run_starts=[(run.attempt, run.started_at) for run in runs if run.started_at is not None],
        tenant=submission.tenant if submission is not None else None,
    )
    return True


@best_effort
def record_end_quietly(records: RunRecords, store: SubmissionStore, execution_id: str) -> None:
    """`record_end` for an observer that must not fail for it (a cancel, a rejection): an error is logged."""
    record_end(records, store, execution_id)


__all__ = ["record_end", "record_end_quietly", "record_run_end", "record_start"]
