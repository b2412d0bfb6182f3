"""Webhook sensors: run-status sensors enqueue an execution's start and end, `webhook_deliveries` sends what is due.

What the webhooks are is decided in `executions`; these sensors only say when. Retries wait for the
next ticks, so no tick sleeps past its long poll.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import dagster as dg

from video_pipelines.executions import (
    EndedRunScan,
    deliver,
    enqueue_progress_events,
    enqueue_recently_ended,
    enqueue_running_events,
    enqueue_webhook,
    record_run_end,
    record_start,
    sweep_submission_ends,
)
from video_pipelines.executions.notifications import RECENT_SECONDS, AttemptReport, secret_env_warning
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords, run_view
from video_pipelines.orchestration.sensors.plans import (
    LONG_POLL_SECONDS,
    POLL_INTERVAL_SECONDS,
    execution_run_sensor,
    long_poll,
    long_poll_sensor,
)
from video_pipelines.submissions import SubmissionStore
from video_pipelines.webhooks import DeliveryOutbox


def log_attempts(log: logging.Logger, reports: list[AttemptReport]) -> None:
    for report in reports:
        (log.warning if report.failed else log.info)(report.line)


@execution_run_sensor(
    "webhook_on_started",
    dg.DagsterRunStatus.STARTED,
    "When an execution's run starts: warns on the run when its webhook's secretEnv is not set on the daemon, "
    "counts the execution's start (once), and POSTs the signed `execution.started` webhook to plans that "
    "subscribe to it.",
)
def webhook_on_started(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
    run = context.dagster_run
    view = run_view(run)
    # This sensor runs in the daemon's code server, where webhooks are sent: what it lacks, the sender lacks.
    warning = secret_env_warning(view.plan)
    if warning is not None:
        context.log.warning(f"{view.execution_id}: {warning}")
        context.instance.report_engine_event(warning, run)
    store = submissions.store()
    if enqueue_progress_events(DagsterRunRecords(context.instance), store, DeliveryOutbox(store), view.execution_id):
        log_attempts(context.log, deliver(store))
    else:
        context.log.info(
            f"{view.execution_id}: nothing to send at its start (no webhook subscribed to events, or already sent)"
        )
    # After the webhook, which a failed claim must not skip; `webhook_deliveries` claims it again once the run ended.
    record_start(store, view.execution_id)  # counted once, at its first run's start


def _webhook_sensor(status: dg.DagsterRunStatus, event: str, description: str) -> dg.RunStatusSensorDefinition:

    @execution_run_sensor(f"webhook_on_{event}", status, description)
    def notify(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
        store, run = submissions.store(), context.dagster_run
        view = run_view(run)
        ended = f"{view.execution_id}: run {run.run_id} ended ({run.status.value})"
        delivery = enqueue_webhook(DagsterRunRecords(context.instance), store, DeliveryOutbox(store), view.execution_id)
        if delivery is None:
            context.log.info(f"{ended}; no webhook to send")
        else:
            context.log.info(f"{ended}; webhook {delivery.webhook_id}")
            log_attempts(context.log, deliver(store))
        # After the webhook, which the span never delays. Counted and traced once, when it is the execution's end.
        record_run_end(DagsterRunRecords(context.instance), store, view)

    return notify


# The end's webhook is usually sent first by `webhook_deliveries`' long poll; these make sure.
webhook_on_completed = _webhook_sensor(
    dg.DagsterRunStatus.SUCCESS,
    "completed",
    "When a run succeeds: POSTs the signed `completed` webhook with the final video, if not sent already.",
)
webhook_on_failed = _webhook_sensor(
    dg.DagsterRunStatus.FAILURE,
    "failed",
    "When a run fails: POSTs the signed `failed` webhook, saying which node failed and why, if not sent already.",
)
webhook_on_canceled = _webhook_sensor(
    dg.DagsterRunStatus.CANCELED,
    "canceled",
    "When a run is canceled: POSTs the signed `canceled` webhook, if not sent already.",
)


# Long-polls as the plan sensor does; the run-status sensors stay as the guarantee (enqueueing is idempotent).


def poll_deliveries(
    store: SubmissionStore,
    instance: dg.DagsterInstance,
    scan: EndedRunScan,
    *,
    wait_seconds: float = LONG_POLL_SECONDS,
    interval: float = POLL_INTERVAL_SECONDS,
) -> list[AttemptReport]:
    """Enqueue (node events of running executions, recent ends) and send, until something was sent or time is up."""
    records = DagsterRunRecords(instance)
    outbox = DeliveryOutbox(store)

    def look() -> list[AttemptReport]:
        enqueue_running_events(records, store, outbox, records.in_progress())
        enqueue_recently_ended(records, store, outbox, scan)
        return deliver(store)

    return long_poll(look, bool, wait_seconds, interval)


@long_poll_sensor(
    "Sends webhooks as soon as executions and their nodes end, and retries deliveries whose backoff has passed; "
    "the tick log lists every attempt and why one failed."
)
def webhook_deliveries(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SensorResult:
    # The cursor remembers where the scan for ended runs stands, so no tick re-reads what the last one handled.
    scan = EndedRunScan.from_json(json.loads(context.cursor) if context.cursor else None)
    store = submissions.store()
    # Ends of submissions that never ran whose claim failed where they ended (see `executions.outcomes`).
    since = datetime.now(UTC) - timedelta(seconds=RECENT_SECONDS)
    sweep_submission_ends(DagsterRunRecords(context.instance), store, since)
    reports = poll_deliveries(store, context.instance, scan)
    log_attempts(context.log, reports)
    failed = sum(1 for report in reports if report.failed)
    if reports:
        reason = f"{len(reports)} webhook attempt(s) made, {failed} failed (see the tick log)"
    else:
        reason = f"no webhook delivery was due within {LONG_POLL_SECONDS:g} s"
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=json.dumps(scan.to_json()))
