"""What an execution's start and end make happen once: its counts in the metrics and its span (in the
execution's trace context, decided at submission, else derived from the run id).

Several observers see a start or an end; the one that claims it counts it. A failed claim is not
retried by its observer (Dagster moves a run-status sensor's cursor past a run even when the sensor
raises), so the `webhook_deliveries` sensor claims again what ended within `RECENT_SECONDS`
(`sweep_run_ends`, `sweep_submission_ends`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind

from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import ExecutionStatus, execution_status
from video_pipelines.submissions import AttemptStore, ExecutionOutcomes, Submission, SubmissionStore
from video_pipelines.submissions.counters import observe_submit_to_start
from video_pipelines.submissions.store import execution_created_at
from video_pipelines.telemetry.trace_context import TraceContext, execution_context
from video_pipelines.telemetry.tracing import Attributes, best_effort, record_span, span_in, tracing
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import Delivery

_log = logging.getLogger(__name__)


def record_start(store: SubmissionStore, execution_id: str, started_at: datetime | None = None) -> bool:
    """Count the start of an execution whose run started (its first), and how long after its submission;
    True for the one observer that claims it."""
    started_at = started_at or datetime.now(UTC)
    claimed = ExecutionOutcomes(store).claim_start(execution_id, started_at)
    if claimed and (created := execution_created_at(execution_id)) is not None:
        observe_submit_to_start(store, started_at.timestamp() - created, warn=_log.warning)
    return claimed


def record_run_end(records: RunRecords, store: SubmissionStore, run: RunView) -> bool:
    """Claim the start, the attempt's outcome and the end that `run`'s end makes happen; True when the end was
    claimed here. Claims are read first, so later observers compute no status."""
    outcomes = ExecutionOutcomes(store)
    claimed = outcomes.claimed(run.execution_id)
    if not claimed.started and run.started_at is not None:
        record_start(store, run.execution_id, datetime.fromtimestamp(run.started_at, UTC))
    attempts = AttemptStore(store)
    attempt_due = run.attempt > 1 and run.state.is_finished and attempts.outcome(run.execution_id, run.attempt) is None
    if (claimed.ended or run.waits_on_providers) and not attempt_due:
        return False  # ended already; or parked, and the continuation's end is the one to claim (no status read)
    status = execution_status(records, store, run.execution_id)
    if attempt_due:
        # How the attempt's run ended: as the execution's status when it ended the execution, else as the run did.
        ended_execution = status.run_id == run.run_id and status.is_terminal
        outcome = status.state if ended_execution else run.state.execution_state
        attempts.record_outcome(run.execution_id, run.attempt, outcome.value)
    return not claimed.ended and _claim_end(records, store, status)


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


EXECUTION_ID_ATTRIBUTE = "video_pipelines.execution_id"


def trace_lookup(store: SubmissionStore) -> Callable[[Delivery], str]:
    """How the webhook sender finds the traceparent of a delivery's execution (its deliveries are its children):
    its submission's, else the one derived from its id (a direct run)."""

    def trace_parent_for(delivery: Delivery) -> str:
        submission = store.get(delivery.execution_id)
        traceparent = submission.traceparent if submission is not None else None
        return execution_context(traceparent, delivery.execution_id).traceparent

    return trace_parent_for


@best_effort
def record_submitted(submission: Submission, *, created: bool, parent: TraceContext | None) -> None:
    """The `submit` span, in the submitting process, linked to the execution's: a child of the span current
    here (the API's server span for the request), else of the caller's span (`parent`)."""
    if not tracing().enabled:
        return
    if otel_trace.get_current_span().get_span_context().is_valid:
        parent = None
    attributes: Attributes = {
        EXECUTION_ID_ATTRIBUTE: submission.execution_id,
        "video_pipelines.tenant": submission.tenant,
        "video_pipelines.created": created,
    }
    execution = execution_context(submission.traceparent, submission.execution_id)
    with span_in(parent, "submit", kind=SpanKind.PRODUCER, attributes=attributes, links=[execution]):
        pass


def _ns(at: datetime | float) -> int:
    seconds = at.timestamp() if isinstance(at, datetime) else at
    return int(seconds * 1_000_000_000)


@best_effort
def record_execution_span(
    outcomes: ExecutionOutcomes,
    status: ExecutionStatus,
    submission: Submission | None,
    runs: Sequence[RunView],
    *,
    ended_at: datetime,
) -> None:
    """Record the ended execution's span with its own ids, so node, provider and webhook spans are its children."""
    if not tracing().enabled:
        return
    started_at: datetime | float = ended_at
    if submission is not None:
        started_at = submission.created_at
    elif runs and runs[0].started_at is not None:
        started_at = runs[0].started_at
    run_starts = [(run.attempt, run.started_at) for run in runs if run.started_at is not None]
    attributes: dict[str, str | int] = {
        EXECUTION_ID_ATTRIBUTE: status.execution_id,
        "video_pipelines.status": status.state.value,
        "video_pipelines.total_jobs": status.total_jobs,
        "video_pipelines.completed_jobs": status.completed_jobs,
        "video_pipelines.reused_jobs": status.reused_jobs,
        "video_pipelines.attempts": len(run_starts),
    }
    if status.run_id is not None:
        attributes["video_pipelines.run_id"] = status.run_id
    if submission is not None:
        attributes["video_pipelines.tenant"] = submission.tenant
    trace = execution_context(submission.traceparent if submission is not None else None, status.execution_id)
    caller = outcomes.parent_span_id(status.execution_id)
    parent = TraceContext(trace.trace_id, int(caller, 16), trace.sampled) if caller else None
    # A canceled execution is no error of the service: its status stays unset.
    failed = status.state is ExecutionState.FAILED
    record_span(
        trace,
        "execution",
        parent=parent,
        start_ns=_ns(started_at),
        end_ns=_ns(ended_at),
        attributes=attributes,
        ok=status.state is ExecutionState.COMPLETED,
        error=(status.error or "the execution failed") if failed else None,
        events=[(f"run started (attempt {attempt})", _ns(at)) for attempt, at in run_starts],
    )


@best_effort
def keep_caller_span(store: SubmissionStore, execution_id: str, caller: TraceContext) -> None:
    """Keep the span id of the caller's span, whose child the execution's span is (recorded when it ends)."""
    ExecutionOutcomes(store).note_caller(execution_id, caller.span_id_hex)
