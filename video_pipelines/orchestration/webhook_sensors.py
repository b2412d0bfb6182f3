"""Signed webhooks when an execution ends: run-status sensors enqueue, every tick delivers what is due.

An ended execution gets one delivery record per event (completed, failed or canceled) in
the outbox; the first attempt is made at once by the run-status sensor, later attempts by
`webhook_deliveries` on the next ticks once their backoff has passed, so no tick ever sleeps.
Secrets are looked up at send time (the submission store's encrypted secret, or the
environment variable a direct run named with `secretEnv`) and never stored elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg

from video_pipelines.errors import WebhookSecretError
from video_pipelines.net import AllowedHosts
from video_pipelines.orchestration.executions import EXECUTION_ID_TAG, find_run, plan_of_run
from video_pipelines.orchestration.job import execute_plan
from video_pipelines.orchestration.resources import SubmissionStoreResource
from video_pipelines.orchestration.status import TERMINAL, execution_status
from video_pipelines.submissions import SubmissionStore
from video_pipelines.webhooks import (
    ENV_SOURCE_PREFIX,
    SUBMISSION_SOURCE,
    Delivery,
    DeliveryOutbox,
    RetrySchedule,
    deliver_due,
    encode_payload,
    payload_for,
)


def webhook_target(
    instance: dg.DagsterInstance, store: SubmissionStore, execution_id: str
) -> tuple[str, str | None] | None:
    """(url, secret source) of an execution's webhook, or None when it has none."""
    submission = store.get(execution_id)
    record = find_run(instance, execution_id)
    if record is not None:
        hook = plan_of_run(record.dagster_run).get("webhook")
        if not hook:
            return None
        if hook.get("secretEnv"):
            return str(hook["url"]), f"{ENV_SOURCE_PREFIX}{hook['secretEnv']}"
        has_secret = submission is not None and submission.has_webhook_secret
        return str(hook["url"]), SUBMISSION_SOURCE if has_secret else None
    if submission is None or not submission.webhook_url:
        return None
    return submission.webhook_url, SUBMISSION_SOURCE if submission.has_webhook_secret else None


def enqueue_webhook(
    instance: dg.DagsterInstance, store: SubmissionStore, outbox: DeliveryOutbox, execution_id: str
) -> Delivery | None:
    """Record the webhook of an ended execution (idempotent per execution and event)."""
    target = webhook_target(instance, store, execution_id)
    if target is None:
        return None
    status = execution_status(instance, store, execution_id)
    if status["status"] not in TERMINAL:
        return None
    url, secret_source = target
    return outbox.enqueue(
        execution_id=execution_id,
        event=status["status"],
        url=url,
        body=encode_payload(payload_for(status)),
        secret_source=secret_source,
    )


def secret_lookup(store: SubmissionStore) -> Callable[[Delivery], str | None]:
    def secret_for(delivery: Delivery) -> str | None:
        source = delivery.secret_source
        if source is None:
            return None
        if source == SUBMISSION_SOURCE:
            return store.webhook_secret(delivery.execution_id)
        name = source.removeprefix(ENV_SOURCE_PREFIX)
        value = os.environ.get(name)
        if not value:
            raise WebhookSecretError(f"environment variable {name} (secretEnv) is not set where webhooks are sent")
        return value

    return secret_for


def deliver(store: SubmissionStore) -> list[str]:
    """Send every delivery that is due; one line per attempt for the sensor's log."""
    outbox = DeliveryOutbox(store)
    sent = deliver_due(
        outbox,
        secret_for=secret_lookup(store),
        allowed=AllowedHosts.from_env(),
        schedule=RetrySchedule.from_env(),
    )
    return [
        f"{delivery.webhook_id} ({delivery.execution_id}, {delivery.event}): "
        + (f"HTTP {outcome.status_code}" if outcome.status_code is not None else f"error: {outcome.error}")
        for delivery, outcome in sent
    ]


def _notify(context: dg.RunStatusSensorContext, store: SubmissionStore) -> None:
    run = context.dagster_run
    execution_id = run.tags.get(EXECUTION_ID_TAG, run.run_id)
    delivery = enqueue_webhook(context.instance, store, DeliveryOutbox(store), execution_id)
    if delivery is None:
        context.log.info(f"{execution_id}: no webhook")
        return
    for line in deliver(store):
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
# one evaluation this sensor looks every POLL_INTERVAL_SECONDS for runs that ended in the last
# RECENT_SECONDS without a delivery record, and for due retries; the run-status sensors stay
# as the guarantee (enqueueing is idempotent per execution and event).
LONG_POLL_SECONDS = 4.0
POLL_INTERVAL_SECONDS = 0.2
RECENT_SECONDS = 120.0
_ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
_handled_runs: dict[str, float] = {}  # run id -> when; runs this process already enqueued or found without webhook
_last_checked: list[float] = []  # when enqueue_recently_ended last looked, in this process
# Each look re-reads runs updated since the previous look minus this margin (commits land late).
OVERLAP_SECONDS = 5.0


def enqueue_recently_ended(instance: dg.DagsterInstance, store: SubmissionStore, outbox: DeliveryOutbox) -> int:
    """Enqueue the webhooks of execute_plan runs that ended lately and have no delivery record yet."""
    now = time.time()
    for run_id, seen in list(_handled_runs.items()):
        if now - seen > 2 * RECENT_SECONDS:
            del _handled_runs[run_id]
    since = max(now - RECENT_SECONDS, _last_checked[-1] - OVERLAP_SECONDS) if _last_checked else now - RECENT_SECONDS
    _last_checked[:] = [now]
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=execute_plan.name,
            statuses=_ENDED,
            updated_after=datetime.fromtimestamp(since, tz=UTC),
        ),
        limit=100,
    )
    enqueued = 0
    for record in records:
        run = record.dagster_run
        if run.run_id in _handled_runs:
            continue
        execution_id = run.tags.get(EXECUTION_ID_TAG, run.run_id)
        if not outbox.deliveries(execution_id) and enqueue_webhook(instance, store, outbox, execution_id):
            enqueued += 1
        _handled_runs[run.run_id] = now
    return enqueued


def poll_deliveries(
    store: SubmissionStore,
    instance: dg.DagsterInstance,
    *,
    wait_seconds: float = LONG_POLL_SECONDS,
    interval: float = POLL_INTERVAL_SECONDS,
) -> list[str]:
    """Enqueue and send what is due, looking again until something was sent or `wait_seconds` pass."""
    deadline = time.monotonic() + wait_seconds
    outbox = DeliveryOutbox(store)
    while True:
        enqueue_recently_ended(instance, store, outbox)
        lines = deliver(store)
        if lines or time.monotonic() + interval > deadline:
            return lines
        time.sleep(interval)


@dg.sensor(minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def webhook_deliveries(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SkipReason:
    """Send webhooks as soon as executions end, and retry deliveries whose backoff has passed."""
    lines = poll_deliveries(submissions.store(), context.instance)
    for line in lines:
        context.log.info(line)
    return dg.SkipReason(f"{len(lines)} webhook attempt(s) made" if lines else "no webhook delivery is due")


def delivery_report(store: SubmissionStore, execution_id: str) -> list[dict[str, object]]:
    """Every webhook delivery of an execution with every attempt (`video-pipelines deliveries`)."""
    outbox = DeliveryOutbox(store)
    return [
        {
            "webhookId": delivery.webhook_id,
            "event": delivery.event,
            "state": delivery.state.value,
            "createdAt": delivery.created_at.isoformat(),
            "deliveredAt": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
            "nextAttemptAt": delivery.next_attempt_at.isoformat() if delivery.state.value == "pending" else None,
            "attempts": [
                {
                    "number": attempt.number,
                    "at": attempt.started_at.isoformat(),
                    "statusCode": attempt.status_code,
                    "error": attempt.error,
                    "durationMs": attempt.duration_ms,
                }
                for attempt in outbox.attempts(delivery.webhook_id)
            ],
        }
        for delivery in outbox.deliveries(execution_id)
    ]
