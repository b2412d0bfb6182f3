"""An ended execution's webhook: where it goes, with which secret, when it is enqueued and sent.

An ended execution gets one delivery record per event (completed, failed or canceled) in
the outbox; `deliver` sends what is due. Secrets are looked up at send time (the submission
store's encrypted secret, or the environment variable a direct run named with `secretEnv`)
and never stored elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from video_pipelines.errors import WebhookError, WebhookSecretError
from video_pipelines.executions.records import RunRecords
from video_pipelines.executions.status import CANCELED_ERROR, ExecutionStatus, execution_status
from video_pipelines.net import AllowedHosts
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import (
    ENV_SOURCE_PREFIX,
    SUBMISSION_SOURCE,
    Delivery,
    DeliveryOutbox,
    RetrySchedule,
    deliver_due,
    encode_payload,
)


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret_source: str | None  # SUBMISSION_SOURCE, ENV_SOURCE_PREFIX + a variable name, or None: unsigned


def webhook_target(records: RunRecords, store: SubmissionStore, execution_id: str) -> WebhookTarget | None:
    """Where an execution's webhook goes and where its secret is, or None when it has no webhook."""
    submission = store.get(execution_id)
    run = records.find_run(execution_id)
    if run is not None:
        hook = run.plan.get("webhook")
        if not hook:
            return None
        if hook.get("secretEnv"):
            return WebhookTarget(str(hook["url"]), f"{ENV_SOURCE_PREFIX}{hook['secretEnv']}")
        has_secret = submission is not None and submission.has_webhook_secret
        return WebhookTarget(str(hook["url"]), SUBMISSION_SOURCE if has_secret else None)
    if submission is None or not submission.webhook_url:
        return None
    return WebhookTarget(submission.webhook_url, SUBMISSION_SOURCE if submission.has_webhook_secret else None)


def webhook_payload(status: ExecutionStatus) -> dict[str, Any]:
    """The body of an ended execution's webhook:

        {"executionId", "status": "completed|failed|canceled",
         "video": {"url", "duration", "aspectRatio", "width", "height", "status": "completed"} | null,
         "error": null | "...", "completedJobs", "totalJobs", "cost": {"totalUsd", "jobs": {node: usd}}}

    Raises WebhookError for an execution that has not ended (a webhook is sent only at the end).
    """
    if not status.is_terminal:
        raise WebhookError(
            f"execution {status.execution_id} is {status.state.value!r}; "
            "a webhook is sent only once it is completed, failed or canceled"
        )
    completed = status.state is ExecutionState.COMPLETED
    video = status.result if completed else None
    default_error = CANCELED_ERROR if status.state is ExecutionState.CANCELED else "the execution failed"
    return {
        "executionId": status.execution_id,
        "status": status.state.value,
        "video": None
        if video is None
        else {
            "url": video.url,
            "duration": video.duration,
            "aspectRatio": video.aspect_ratio,
            "width": video.width,
            "height": video.height,
            "status": "completed",
        },
        "error": None if completed else (status.error or default_error),
        "completedJobs": status.completed_jobs,
        "totalJobs": status.total_jobs,
        # What the providers charged for this execution, in USD (reused nodes cost nothing).
        "cost": {
            "totalUsd": status.cost_usd,
            "jobs": {node_id: round(node.cost_usd, 4) for node_id, node in status.nodes.items()},
        },
    }


def enqueue_webhook(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, execution_id: str
) -> Delivery | None:
    """Record the webhook of an ended execution (idempotent per execution and event)."""
    target = webhook_target(records, store, execution_id)
    if target is None:
        return None
    status = execution_status(records, store, execution_id)
    if not status.is_terminal:
        return None
    return outbox.enqueue(
        execution_id=execution_id,
        event=status.state.value,
        url=target.url,
        body=encode_payload(webhook_payload(status)),
        secret_source=target.secret_source,
    )


def secret_lookup(store: SubmissionStore) -> Callable[[Delivery], str | None]:
    """How the sender finds a delivery's secret when it signs: never earlier, never stored elsewhere."""

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
    """Send every delivery that is due; one line per attempt for a log."""
    sent = deliver_due(
        DeliveryOutbox(store),
        secret_for=secret_lookup(store),
        allowed=AllowedHosts.from_env(),
        schedule=RetrySchedule.from_env(),
    )
    return [
        f"{delivery.webhook_id} ({delivery.execution_id}, {delivery.event}): "
        + (f"HTTP {outcome.status_code}" if outcome.status_code is not None else f"error: {outcome.error}")
        for delivery, outcome in sent
    ]


# How far back a scan for ended runs looks, and how much each look re-reads of the previous
# one (a run's end is committed a little after its update time).
RECENT_SECONDS = 120.0
OVERLAP_SECONDS = 5.0


@dataclass
class EndedRunScan:
    """Where the scan for ended runs without a webhook record stands, kept between looks (a sensor's cursor)."""

    last_checked: float | None = None
    handled: dict[str, float] = field(default_factory=dict)  # run id -> when it was enqueued or found without one

    def to_json(self) -> dict[str, Any]:
        return {"last_checked": self.last_checked, "handled": self.handled}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EndedRunScan:
        if not data:
            return cls()
        return cls(last_checked=data.get("last_checked"), handled=dict(data.get("handled") or {}))


def enqueue_recently_ended(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, scan: EndedRunScan
) -> int:
    """Enqueue the webhooks of runs that ended lately and have no delivery record yet; `scan` moves on."""
    now = time.time()
    scan.handled = {run_id: seen for run_id, seen in scan.handled.items() if now - seen <= 2 * RECENT_SECONDS}
    since = now - RECENT_SECONDS
    if scan.last_checked is not None:
        since = max(since, scan.last_checked - OVERLAP_SECONDS)
    scan.last_checked = now
    enqueued = 0
    for run in records.ended_since(datetime.fromtimestamp(since, tz=UTC), limit=100):
        if run.run_id in scan.handled:
            continue
        if not outbox.deliveries(run.execution_id) and enqueue_webhook(records, store, outbox, run.execution_id):
            enqueued += 1
        scan.handled[run.run_id] = now
    return enqueued


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
