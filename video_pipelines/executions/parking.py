"""Executions parked on provider jobs: continued when a job ends, ended by a cancel or their deadline.

The node side (`nodes.parking`) records each wait and tags its run; this side decides what a wait's end
means for the execution. A provider's webhook and the poller both land here; every move is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache

from video_pipelines.errors import VideoPipelineError
from video_pipelines.executions.attempts import ExecutionRuns, cancel_requested, deadline_left
from video_pipelines.executions.notifications import enqueue_webhook
from video_pipelines.executions.outcomes import record_end_quietly
from video_pipelines.executions.records import PARKED_END_TAG, RunRecords, RunView
from video_pipelines.executions.status import execution_status
from video_pipelines.providers import ProviderJobs, provider_jobs
from video_pipelines.submissions import (
    AttemptReason,
    AttemptStore,
    ProviderWait,
    ProviderWaits,
    RunAttempt,
    SubmissionStore,
)
from video_pipelines.submissions.waits import SAME_LINEAGE, LineageFollows, WaitState, poll_seconds
from video_pipelines.telemetry.trace_context import execution_context
from video_pipelines.telemetry.tracing import span_in
from video_pipelines.webhooks import DeliveryOutbox

_log = logging.getLogger(__name__)

Jobs = Callable[[str], ProviderJobs]


def _with_follows(store: SubmissionStore, jobs: Jobs) -> Jobs:
    """`jobs`, and the follows of another execution's parked node (`SAME_LINEAGE`), which no provider runs."""
    return lambda provider: LineageFollows(store) if provider == SAME_LINEAGE else jobs(provider)


def continue_parked(records: RunRecords, store: SubmissionStore, execution_id: str) -> RunAttempt | None:
    """Ask for the run that continues a parked execution once one of its jobs ended; the attempt when this call
    asked for it. The plan sensor launches it, carrying every completed node; the job's node collects it there."""
    latest = records.find_run(execution_id)
    if latest is None or not latest.waits_on_providers or cancel_requested(store, latest):
        return None  # still running (it collects what ends meanwhile), continued already, or ended
    if not any(wait.state is WaitState.FINISHED for wait in ProviderWaits(store).of_execution(execution_id)):
        return None
    runs = ExecutionRuns.of(records, latest)
    attempt, created = AttemptStore(store).request(
        execution_id, runs.attempt + 1, AttemptReason.CONTINUE, previous_run_id=latest.run_id
    )
    if created:
        ProviderWaits(store).collect_follows(execution_id)
    return attempt if created else None


def end_parked(records: RunRecords, store: SubmissionStore, latest: RunView | None, why: str, jobs: Jobs) -> bool:
    """End a parked execution ("canceled" or "deadline") given its newest run: its provider jobs canceled, its
    webhook sent; True when it was parked."""
    if latest is None or not latest.waits_on_providers:
        return False
    execution_id = latest.execution_id
    records.add_run_tags(latest.run_id, {PARKED_END_TAG: why})
    AttemptStore(store).cancel_pending(execution_id)  # a continuation asked for and not launched
    ProviderWaits(store).cancel_execution(execution_id)
    cancel_jobs(store, jobs, execution_id)
    enqueue_webhook(records, store, DeliveryOutbox(store), execution_id)
    record_end_quietly(records, store, execution_id)
    return True


def cancel_jobs(store: SubmissionStore, jobs: Jobs, execution_id: str | None = None) -> list[str]:
    """Call the provider's cancel of each canceling wait (of one execution, or all); the jobs canceled. A provider
    not configured here (the API without its key) leaves them to the poller, which runs where runs do."""
    waits, jobs = ProviderWaits(store), _with_follows(store, jobs)
    canceling = [
        wait
        for wait in (waits.of_execution(execution_id) if execution_id else waits.in_state(WaitState.CANCELING))
        if wait.state is WaitState.CANCELING
    ]
    done = []
    for wait in canceling:
        try:
            with _traced(store, wait, "cancel"):
                jobs(wait.provider).cancel_job(wait.job_id)
        except VideoPipelineError as exc:
            _log.info("%s: the cancel of %s is left to the poller: %s", wait.execution_id, wait.label, exc)
            continue
        if waits.canceled(wait.provider, wait.job_id):
            done.append(wait.label)
    return done


def _traced(store: SubmissionStore, wait: ProviderWait, what: str) -> AbstractContextManager[object]:
    """A span of the execution's trace around a call about its job (the provider sees its traceparent)."""
    submission = store.get(wait.execution_id)
    parent = execution_context(submission.traceparent if submission else None, wait.execution_id)
    return span_in(parent, f"{what} {wait.label}", attributes={"video_pipelines.execution_id": wait.execution_id})


@dataclass
class PollReport:
    """What one look at the waits did, for the poller's tick log."""

    checked: int = 0
    finished: list[str] = field(default_factory=list)
    continued: list[str] = field(default_factory=list)  # execution ids
    ended: dict[str, str] = field(default_factory=dict)  # execution id -> why
    canceled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def poll_waits(
    records: RunRecords, store: SubmissionStore, jobs: Jobs = provider_jobs, *, sweep: bool, limit: int = 100
) -> PollReport:
    """Check the waiting jobs that are due and continue executions whose job ended; with `sweep`, also end those
    past their deadline or ended otherwise (a read per parked execution); cancel what they left running."""
    report = PollReport()
    waits = ProviderWaits(store)
    jobs = cache(_with_follows(store, jobs))  # a provider is configured once per pass, not once per job
    for wait in waits.due(limit=limit):
        report.checked += 1
        try:
            with _traced(store, wait, "check"):
                finished = jobs(wait.provider).job_finished(wait.job_id)
        except VideoPipelineError as exc:
            report.errors.append(f"{wait.label}: {exc}")
            waits.check_again(wait.provider, wait.job_id, 2 * poll_seconds(wait.provider))
            continue
        if not finished:
            waits.check_again(wait.provider, wait.job_id, poll_seconds(wait.provider))
        elif waits.finish(wait.provider, wait.job_id):
            report.finished.append(wait.label)
    for execution_id in {wait.execution_id for wait in waits.in_state(WaitState.FINISHED, limit)}:
        if continue_parked(records, store, execution_id) is not None:
            report.continued.append(execution_id)
    for execution_id in waits.open_executions() if sweep else ():
        _sweep(records, store, jobs, execution_id, report)
    report.canceled.extend(cancel_jobs(store, jobs))
    return report


def _sweep(records: RunRecords, store: SubmissionStore, jobs: Jobs, execution_id: str, report: PollReport) -> None:
    latest = records.find_run(execution_id)
    if latest is None:
        return
    if latest.waits_on_providers:
        left = deadline_left(ExecutionRuns.of(records, latest))
        if cancel_requested(store, latest):  # it parked as the cancel came
            if end_parked(records, store, latest, "canceled", jobs):
                report.ended[execution_id] = "canceled as it parked"
        elif left is not None and left <= 0 and end_parked(records, store, latest, "deadline", jobs):
            report.ended[execution_id] = "deadline exceeded while parked"
    elif execution_status(records, store, execution_id).is_terminal and ProviderWaits(store).cancel_execution(
        execution_id
    ):
        # Ended another way (a node failed, a cancel): nobody will collect the jobs still running.
        report.ended[execution_id] = "ended; its provider jobs are canceled"
