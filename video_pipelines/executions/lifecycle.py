"""Submitting, retrying and canceling an execution: what every door does to change one.

A cancel is atomic with the launch: it wins against a PENDING submission or attempt (one conditional
UPDATE, as the sensor's claim), else it records a request the run obeys. So `canceled` is never
answered while a run can still work.
"""

from __future__ import annotations

from video_pipelines.errors import ExecutionError
from video_pipelines.executions.admission import Admission, check_base_owner
from video_pipelines.executions.attempts import ExecutionRuns, cancel_requested, pending_attempt, stop_resume
from video_pipelines.executions.notifications import enqueue_webhook
from video_pipelines.executions.outcomes import record_end_quietly
from video_pipelines.executions.ownership import OPERATOR, Caller
from video_pipelines.executions.records import RunRecords, RunState, RunView
from video_pipelines.executions.status import ExecutionStatus, execution_status
from video_pipelines.executions.traces import keep_caller_span, record_submitted
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import DEFAULT_TENANT, AttemptReason, AttemptStore, RunAttempt, SubmissionStore
from video_pipelines.telemetry.trace_context import new_execution_context, parse_traceparent
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import DeliveryOutbox


def submit(
    admission: Admission,
    store: SubmissionStore,
    *,
    idempotency_key: str | None = None,
    caller: Caller = OPERATOR,
    trace_parent: str | None = None,
    records: RunRecords | None = None,
) -> str:
    """Store an admitted plan as `caller`'s tenant's; returns its execution id (the same for the same key).
    A tenant's base is checked now (missing or another's: the same error), an operator's by the plan sensor."""
    plan = admission.plan
    if caller.tenant is not None and plan.base_execution_id is not None:
        check_base_owner(store, plan.base_execution_id, caller.tenant, records)
    submission, created = store.submit(
        plan.to_wire(include_secret=False),
        SubmitOptions.of(plan, idempotency_key),
        tenant=DEFAULT_TENANT if caller.tenant is None else caller.tenant,
        traceparent=new_execution_context(trace_parent).traceparent,
    )
    caller_span = parse_traceparent(trace_parent)
    if created and caller_span is not None:
        keep_caller_span(store, submission.execution_id, caller_span)
    record_submitted(submission, created=created, parent=caller_span)
    return submission.execution_id


def request_retry(records: RunRecords, store: SubmissionStore, execution_id: str) -> RunAttempt:
    """Record a retry of a failed or canceled execution that ran (idempotent while pending)."""
    status = execution_status(records, store, execution_id)
    latest = records.find_run(execution_id)
    if latest is None:
        raise ExecutionError(
            f"execution {execution_id} is {status.state.value} and never ran, so there is nothing to retry; "
            "submit its plan again"
        )
    pending = pending_attempt(store, latest)  # one whose run exists already is no longer pending
    if pending is not None:
        return pending
    if status.state not in (ExecutionState.FAILED, ExecutionState.CANCELED):
        raise ExecutionError(
            f"execution {execution_id} is {status.state.value}; only a failed or canceled execution can be retried"
        )
    runs = ExecutionRuns.of(records, latest)
    attempt, _created = AttemptStore(store).request(
        execution_id, runs.attempt + 1, AttemptReason.RETRY, previous_run_id=latest.run_id
    )
    return attempt


def retry(records: RunRecords, store: SubmissionStore, execution_id: str) -> ExecutionStatus:
    """Run a failed or canceled execution again (its completed nodes reused); returns its status."""
    request_retry(records, store, execution_id)
    return execution_status(records, store, execution_id)


def cancel(records: RunRecords, store: SubmissionStore, execution_id: str) -> ExecutionStatus:
    """Cancel a pending submission or attempt, or have its launched run run nothing more; returns the status."""
    attempts = AttemptStore(store)
    resume_stopped = stop_resume(records, store, execution_id)
    # A finished run takes no request (a retry or resume would take it for a live one); a launch asked for does.
    latest = records.find_run(execution_id)
    live = latest is None or not latest.state.is_finished
    # Each PENDING move first, then the request: a claim between the two is caught by the request.
    attempt_canceled = attempts.cancel_pending(execution_id)
    attempts.request_cancel(execution_id, launched=live)
    if resume_stopped or attempt_canceled:
        # Its last run ended before; ending the attempt that was to follow it ends the execution (if not already).
        record_end_quietly(records, store, execution_id)
    if store.cancel_pending(execution_id):
        # Canceled before it ran: its webhook says so (sent by the webhook_deliveries sensor).
        enqueue_webhook(records, store, DeliveryOutbox(store), execution_id)
        record_end_quietly(records, store, execution_id)
    else:
        store.request_cancel(execution_id, launched=live)
    # Read after the request: a run created later than this finds the request when its `plan` step starts.
    run = records.find_run(execution_id)
    if run is not None:
        stop_run(records, store, run)
    return execution_status(records, store, execution_id)


# A run whose worker has not begun it. Terminating one fails it under DefaultRunLauncher: Dagster's run worker
# leaves alone a run it finds CANCELING, and its code server then reports the run failed.
_NOT_BEGUN = (RunState.NOT_STARTED, RunState.STARTING)


def stop_run(records: RunRecords, store: SubmissionStore, run: RunView) -> bool:
    """Have a run of a canceled execution run nothing more; True when it was terminated or canceled."""
    if run.state.is_finished:
        return False
    if run.state in _NOT_BEGUN and cancel_requested(store, run):
        return records.cancel_unbegun(run.run_id)
    records.terminate(run.run_id)
    return True
