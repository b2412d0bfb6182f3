"""Signed webhooks: run-status sensors enqueue an execution's start and end, every tick delivers what is due.

What an execution's webhooks are (target, secret, payloads, outbox records) is decided in
`video_pipelines.executions`; these sensors only say when. `webhook_on_started` records
`execution.started` for plans that subscribe to it; `webhook_deliveries` records node events
of running executions as their nodes end; the ended-run sensors record the end, after a last
sweep of the node events. The first attempt is made at once by the sensor that enqueued,
later attempts by `webhook_deliveries` on the next ticks once their backoff has passed, so no
tick ever sleeps past its long poll.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from video_pipelines.executions import (
    EXECUTION_ID_TAG,
    EndedRunScan,
    deliver,
    enqueue_progress_events,
    enqueue_recently_ended,
    enqueue_running_events,
    enqueue_webhook,
)
from video_pipelines.orchestration.job import execute_plan
from video_pipelines.orchestration.resources import SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.traces import trace_run_end
from video_pipelines.submissions import SubmissionStore
from video_pipelines.webhooks import DeliveryOutbox


def _notify(context: dg.RunStatusSensorContext, store: SubmissionStore) -> None:
    run = context.dagster_run
    execution_id = run.tags.get(EXECUTION_ID_TAG, run.run_id)
    delivery = enqueue_webhook(DagsterRunRecords(context.instance), store, DeliveryOutbox(store), execution_id)
    if delivery is None:
        context.log.info(f"{execution_id}: no webhook")
        return
    for line in deliver(store):
        context.log.info(line)


def notify_started(instance: dg.DagsterInstance, store: SubmissionStore, run: dg.DagsterRun) -> list[str]:
    """Record `execution.started` (and node events so far) of a run that started, and send what is due."""
    execution_id = run.tags.get(EXECUTION_ID_TAG, run.run_id)
    if not enqueue_progress_events(DagsterRunRecords(instance), store, DeliveryOutbox(store), execution_id):
        return [f"{execution_id}: nothing to send at its start (no webhook subscribed to events, or already sent)"]
    return deliver(store)


@dg.run_status_sensor(
    name="webhook_on_started",
    run_status=dg.DagsterRunStatus.STARTED,
    monitored_jobs=[execute_plan],
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def webhook_on_started(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
    """POST the signed `execution.started` webhook to plans whose webhook subscribes to it."""
    for line in notify_started(context.instance, submissions.store(), context.dagster_run):
        context.log.info(line)


def _webhook_sensor(status: dg.DagsterRunStatus, event: str, description: str) -> dg.RunStatusSensorDefinition:
    """One run-status sensor per ended status (Dagster takes one status per sensor)."""

    @dg.run_status_sensor(
        name=f"webhook_on_{event}",
        description=description,
        run_status=status,
        monitored_jobs=[execute_plan],
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def notify(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
        _notify(context, submissions.store())
        # After the webhook: the execution's span never delays it.
        trace_run_end(context.instance, submissions.store(), context.dagster_run)

    return notify


webhook_on_completed = _webhook_sensor(
    dg.DagsterRunStatus.SUCCESS, "completed", "POST the signed `completed` webhook with the final video."
)
webhook_on_failed = _webhook_sensor(
    dg.DagsterRunStatus.FAILURE, "failed", "POST the signed `failed` webhook, saying which node failed and why."
)
webhook_on_canceled = _webhook_sensor(
    dg.DagsterRunStatus.CANCELED, "canceled", "POST the signed `canceled` webhook when an execution is canceled."
)


# Like the plan sensor, the delivery sensor long-polls: the daemon evaluates sensors every
# 5 s at best, so a run-status sensor alone answers 2.5 s after a run ends on average. Within
# one evaluation this sensor looks every POLL_INTERVAL_SECONDS for runs that ended lately
# without a delivery record, and for due retries; the run-status sensors stay as the
# guarantee (enqueueing is idempotent per execution and event).
LONG_POLL_SECONDS = 4.0
POLL_INTERVAL_SECONDS = 0.2


def poll_deliveries(
    store: SubmissionStore,
    instance: dg.DagsterInstance,
    scan: EndedRunScan,
    *,
    wait_seconds: float = LONG_POLL_SECONDS,
    interval: float = POLL_INTERVAL_SECONDS,
) -> list[str]:
    """Enqueue and send what is due, looking again until something was sent or `wait_seconds` pass.

    Each look records the node events of running executions that subscribe to them, and the
    end of runs that ended lately without one.
    """
    deadline = time.monotonic() + wait_seconds
    records = DagsterRunRecords(instance)
    outbox = DeliveryOutbox(store)
    while True:
        enqueue_running_events(records, store, outbox, records.in_progress())
        enqueue_recently_ended(records, store, outbox, scan)
        lines = deliver(store)
        if lines or time.monotonic() + interval > deadline:
            return lines
        time.sleep(interval)


@dg.sensor(minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def webhook_deliveries(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SensorResult:
    """Send webhooks as soon as executions and their nodes end, and retry deliveries whose backoff has passed."""
    # The cursor remembers where the scan for ended runs stands, so no tick re-reads what the last one handled.
    scan = EndedRunScan.from_json(json.loads(context.cursor) if context.cursor else None)
    lines = poll_deliveries(submissions.store(), context.instance, scan)
    for line in lines:
        context.log.info(line)
    reason = f"{len(lines)} webhook attempt(s) made" if lines else "no webhook delivery is due"
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=json.dumps(scan.to_json()))
