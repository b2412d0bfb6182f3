"""An execution's trace context (decided at submission, else derived from the run id) and the spans the
application layer records in it; the execution's span is recorded once, by the observer of its end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind

from video_pipelines.executions.records import RunView
from video_pipelines.executions.status import ExecutionStatus
from video_pipelines.submissions import ExecutionOutcomes, Submission, SubmissionStore
from video_pipelines.telemetry.trace_context import TraceContext, execution_context
from video_pipelines.telemetry.tracing import Attributes, best_effort, record_span, span_in, tracing
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import Delivery

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
