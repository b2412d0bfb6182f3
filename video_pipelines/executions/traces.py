"""An execution's trace: which one it is, and the spans the application layer records in it.

The context itself (trace id, the execution span's id) is decided once, at submission, or
derived from the run id of a run launched directly (`telemetry.trace_context`); every door
and process reads it back from the same places: the submission, else the run's
`video/traceparent` tag, else the id. The execution's span is recorded when it ends
(`record_execution`), by whoever sees the end: the run-status sensors for a run, the plan
sensor for a submission it rejects, `cancel` for one canceled before it ran.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from opentelemetry.trace import SpanKind

from video_pipelines.executions.records import RunRecords
from video_pipelines.executions.status import ExecutionStatus, execution_status
from video_pipelines.submissions import Submission, SubmissionStore
from video_pipelines.telemetry.trace_context import TraceContext, execution_context
from video_pipelines.telemetry.tracing import Attributes, best_effort, record_span, span_in, tracing
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import Delivery

EXECUTION_ID_ATTRIBUTE = "video_pipelines.execution_id"


def execution_trace(store: SubmissionStore | None, execution_id: str) -> TraceContext:
    """The trace context of an execution: its submission's, else the one derived from its id (a direct run)."""
    submission = store.get(execution_id) if store is not None else None
    return execution_context(submission.traceparent if submission is not None else None, execution_id)


def trace_lookup(store: SubmissionStore) -> Callable[[Delivery], str]:
    """How the webhook sender finds the traceparent of a delivery's execution (its deliveries are its children)."""

    def trace_parent_for(delivery: Delivery) -> str:
        return execution_trace(store, delivery.execution_id).traceparent

    return trace_parent_for


@best_effort
def record_submitted(submission: Submission, *, created: bool, parent: TraceContext | None) -> None:
    """The `submit` span, in the submitting process: a child of the caller's span, linked to the execution's."""
    if not tracing().enabled:
        return
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
def record_execution(
    trace: TraceContext,
    status: ExecutionStatus,
    *,
    started_at: datetime | float,
    ended_at: datetime | float,
    run_started_at: float | None = None,
    tenant: str | None = None,
) -> None:
    """Record the ended execution's span with its own ids, so the node, provider and webhook spans are its children.

    It starts when the execution was submitted (or its run started, for a direct run) and
    ends when it ended; `run_started_at` marks when its run started. Nothing when tracing is off.
    """
    if not tracing().enabled:
        return
    attributes: dict[str, str | int] = {
        EXECUTION_ID_ATTRIBUTE: status.execution_id,
        "video_pipelines.status": status.state.value,
        "video_pipelines.total_jobs": status.total_jobs,
        "video_pipelines.completed_jobs": status.completed_jobs,
        "video_pipelines.reused_jobs": status.reused_jobs,
    }
    if status.run_id is not None:
        attributes["video_pipelines.run_id"] = status.run_id
    if tenant is not None:
        attributes["video_pipelines.tenant"] = tenant
    # A canceled execution is no error of the service: its status stays unset.
    failed = status.state is ExecutionState.FAILED
    record_span(
        trace,
        "execution",
        start_ns=_ns(started_at),
        end_ns=_ns(ended_at),
        attributes=attributes,
        ok=status.state is ExecutionState.COMPLETED,
        error=(status.error or "the execution failed") if failed else None,
        events=[("run started", _ns(run_started_at))] if run_started_at is not None else (),
    )


@best_effort
def record_never_ran(records: RunRecords, store: SubmissionStore, execution_id: str) -> None:
    """Record the span of a submission that ended without a run (rejected, or canceled while pending)."""
    if not tracing().enabled:
        return
    submission = store.get(execution_id)
    if submission is None:
        return
    status = execution_status(records, store, execution_id)
    trace = execution_context(submission.traceparent, submission.execution_id)
    record_execution(
        trace, status, started_at=submission.created_at, ended_at=submission.updated_at, tenant=submission.tenant
    )
