"""An execution's webhooks: target, secret (looked up at send time), payloads, enqueueing and sending.
Events are recorded in order, nothing after the end; receivers order by body and deduplicate by id."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from video_pipelines.errors import ExecutionNotFound, WebhookError, WebhookSecretError
from video_pipelines.executions.outcomes import sweep_run_ends, trace_lookup
from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import CANCELED_ERROR, ExecutionStatus, execution_status
from video_pipelines.net import AllowedHosts
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import SUBSCRIBABLE_EVENTS, ExecutionState, NodeState, WebhookEvent
from video_pipelines.webhooks import (
    ENV_SOURCE_PREFIX,
    SUBMISSION_SOURCE,
    AttemptOutcome,
    Delivery,
    DeliveryOutbox,
    DeliveryState,
    RetrySchedule,
    deliver_due,
    encode_payload,
    webhook_id_for,
)


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret_source: str | None  # SUBMISSION_SOURCE, ENV_SOURCE_PREFIX + a variable name, or None: unsigned
    # What the plan subscribed to besides the end (`webhook.events`).
    events: tuple[WebhookEvent, ...] = ()


def subscribed_events(plan: Mapping[str, Any]) -> tuple[WebhookEvent, ...]:
    hook = plan.get("webhook")
    names = hook.get("events") if isinstance(hook, Mapping) else None
    return tuple(event for event in SUBSCRIBABLE_EVENTS if event.value in (names or ()))


def webhook_target(records: RunRecords, store: SubmissionStore, execution_id: str) -> WebhookTarget | None:
    """Where an execution's webhooks go, where their secret is and what they are for; None without a webhook."""
    submission = store.get(execution_id)
    source = SUBMISSION_SOURCE if submission is not None and submission.has_webhook_secret else None
    run = records.find_run(execution_id)
    if run is not None:
        hook = run.plan.get("webhook")
        if not hook:
            return None
        if hook.get("secretEnv"):
            source = f"{ENV_SOURCE_PREFIX}{hook['secretEnv']}"
        return WebhookTarget(str(hook["url"]), source, subscribed_events(run.plan))
    if submission is None or not submission.webhook_url:
        return None
    return WebhookTarget(submission.webhook_url, source, subscribed_events(submission.plan))


def webhook_payload(status: ExecutionStatus) -> dict[str, Any]:
    """The body of an ended execution's webhook; WebhookError before the end."""
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
            **({"captions": video.captions.to_wire()} if video.captions else {}),
        },
        "error": None if completed else (status.error or default_error),
        "completedJobs": status.completed_jobs,
        "totalJobs": status.total_jobs,
        "cost": {
            "totalUsd": status.cost_usd,
            "jobs": {node_id: round(node.cost_usd, 4) for node_id, node in status.nodes.items()},
        },
        "savedUsd": round(status.saved_usd, 4),
    }


NODE_FAILED_ERROR = "the node failed"


def started_payload(status: ExecutionStatus) -> dict[str, Any]:
    return {
        "executionId": status.execution_id,
        "event": WebhookEvent.EXECUTION_STARTED.value,
        "status": ExecutionState.PROCESSING.value,
        "totalJobs": status.total_jobs,
    }


def node_payload(status: ExecutionStatus, node_id: str, error: str | None = None) -> dict[str, Any]:
    """The body of `node.completed` or `node.failed`; WebhookError for a node without either."""
    node = status.nodes.get(node_id)
    event = _node_event(node.state) if node is not None else None
    if node is None or event is None:
        state = node.state.value if node is not None else "not in the plan"
        raise WebhookError(
            f"node {node_id} of execution {status.execution_id} is {state}; "
            "a node webhook is sent once it completed, was reused or failed"
        )
    failed = event is WebhookEvent.NODE_FAILED
    return {
        "executionId": status.execution_id,
        "event": event.value,
        "nodeId": node_id,
        "status": node.state.value,
        "result": node.result.to_wire() if node.result is not None else None,
        "reusedFrom": node.reused_from,
        "error": (error or NODE_FAILED_ERROR) if failed else None,
    }


def _node_event(state: NodeState) -> WebhookEvent | None:
    if state.has_result:
        return WebhookEvent.NODE_COMPLETED
    return WebhookEvent.NODE_FAILED if state is NodeState.FAILED else None


def _has_started(status: ExecutionStatus) -> bool:
    """Whether the execution's run got going: it runs, succeeded or failed, or one of its nodes got somewhere."""
    if status.state is ExecutionState.PROCESSING or status.state is ExecutionState.COMPLETED:
        return True
    if status.run_id is None:
        return False  # rejected or canceled before it was launched
    if status.state is ExecutionState.FAILED:
        return True
    return any(node.state not in (NodeState.PENDING, NodeState.SKIPPED) for node in status.nodes.values())


def _enqueue_progress(
    records: RunRecords, outbox: DeliveryOutbox, target: WebhookTarget, status: ExecutionStatus
) -> list[Delivery]:
    """Record the subscribed events `status` shows that are not recorded yet: started first, then nodes."""
    if not target.events:
        return []
    existing = outbox.deliveries(status.execution_id)
    attempt = _end_attempt(status)
    if any(WebhookEvent(delivery.event).is_end and delivery.attempt == attempt for delivery in existing):
        return []  # nothing is reported after the end
    known = {delivery.webhook_id for delivery in existing}

    def new(event: WebhookEvent, node_id: str = "") -> bool:
        return event in target.events and webhook_id_for(status.execution_id, event.value, node_id) not in known

    payloads: list[tuple[WebhookEvent, str, dict[str, Any]]] = []
    if new(WebhookEvent.EXECUTION_STARTED) and _has_started(status):
        payloads.append((WebhookEvent.EXECUTION_STARTED, "", started_payload(status)))
    nodes = [  # in plan order
        (node_id, event)
        for node_id, node in status.nodes.items()
        if (event := _node_event(node.state)) is not None and new(event, node_id)
    ]
    failed = [node_id for node_id, event in nodes if event is WebhookEvent.NODE_FAILED]
    errors = records.node_errors(status.run_id, failed) if failed and status.run_id is not None else {}
    payloads += [(event, node_id, node_payload(status, node_id, errors.get(node_id))) for node_id, event in nodes]
    return [
        outbox.enqueue(
            execution_id=status.execution_id,
            event=event.value,
            node_id=node_id,
            url=target.url,
            body=encode_payload(payload),
            secret_source=target.secret_source,
        )
        for event, node_id, payload in payloads
    ]


def enqueue_progress_events(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, execution_id: str
) -> list[Delivery]:
    """Record the subscribed events that happened and are not recorded yet (idempotent); returns them."""
    target = webhook_target(records, store, execution_id)
    if target is None or not target.events:
        return []
    return _enqueue_progress(records, outbox, target, execution_status(records, store, execution_id))


def enqueue_running_events(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, runs: Iterable[RunView]
) -> list[Delivery]:
    recorded: list[Delivery] = []
    for run in runs:
        if subscribed_events(run.plan):
            recorded.extend(enqueue_progress_events(records, store, outbox, run.execution_id))
    return recorded


def enqueue_webhook(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, execution_id: str
) -> Delivery | None:
    """Record the webhook of an ended execution (idempotent), after its missed events so they are due first."""
    target = webhook_target(records, store, execution_id)
    if target is None:
        return None
    status = execution_status(records, store, execution_id)
    if not status.is_terminal:
        return None
    _enqueue_progress(records, outbox, target, status)
    return outbox.enqueue(
        execution_id=execution_id,
        event=WebhookEvent.ended(status.state).value,
        url=target.url,
        body=encode_payload(webhook_payload(status)),
        secret_source=target.secret_source,
        attempt=_end_attempt(status),
    )


def _end_attempt(status: ExecutionStatus) -> int:
    """The end's attempt number: 1 + retries (a resumed run's end is the first: the lost run reported none)."""
    return 1 + sum(1 for attempt in status.attempts if attempt.reason == "retry")


def secret_lookup(store: SubmissionStore) -> Callable[[Delivery], str | None]:
    """A delivery's secret, found only when the sender signs."""

    def secret_for(delivery: Delivery) -> str | None:
        source = delivery.secret_source
        if source is None:
            return None
        if source == SUBMISSION_SOURCE:
            return store.webhook_secret(delivery.execution_id)
        name = source.removeprefix(ENV_SOURCE_PREFIX)
        value = os.environ.get(name)
        if not value:
            raise WebhookSecretError(_unset_secret_env(name))
        return value

    return secret_for


def _unset_secret_env(name: str) -> str:
    # The sensors send every webhook (a redelivery asked through the API or CLI too): their environment is the daemon's.
    return (
        f"environment variable {name} (the plan's webhook.secretEnv) is not set where webhooks are sent "
        "(the daemon's environment)"
    )


def secret_env_warning(plan: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str | None:
    """A warning, said when the run starts, that its `secretEnv` is not set here; None when it is."""
    hook = plan.get("webhook")
    name = hook.get("secretEnv") if isinstance(hook, Mapping) else None
    if not name or (os.environ if environ is None else environ).get(str(name)):
        return None
    return (
        f"{_unset_secret_env(str(name))}: this run's webhooks will fail unsent. Set {name} for the daemon "
        "(and restart it), then send failed ones with `video-pipelines deliveries redeliver <webhook id>`"
    )


@dataclass(frozen=True)
class AttemptReport:
    line: str
    failed: bool
    webhook_id: str
    attempt: int
    gave_up: bool  # failed for good: no attempt follows


def _report(delivery: Delivery, outcome: AttemptOutcome) -> AttemptReport:
    what = f"{delivery.webhook_id} ({delivery.execution_id}, {delivery.event}) attempt {delivery.attempts}"
    why = outcome.text

    def report(line: str, failed: bool, gave_up: bool = False) -> AttemptReport:
        return AttemptReport(line, failed, delivery.webhook_id, delivery.attempts, gave_up)

    if outcome.acknowledged:
        return report(f"{what}: delivered ({why})", failed=False)
    if delivery.state is DeliveryState.FAILED:
        return report(f"{what} failed, delivery failed for good: {delivery.last_error or why}", True, gave_up=True)
    if delivery.state is DeliveryState.DELIVERED:  # another sender delivered it meanwhile
        return report(f"{what} failed ({why}); already delivered by another attempt", failed=False)
    next_at = delivery.next_attempt_at.astimezone(UTC).strftime("%H:%M:%S")
    return report(f"{what} failed, retried at {next_at} UTC: {why}", failed=True)


def deliver(store: SubmissionStore) -> list[AttemptReport]:
    """Send every due delivery; one log report per attempt."""
    sent = deliver_due(
        DeliveryOutbox(store),
        secret_for=secret_lookup(store),
        allowed=AllowedHosts.from_env(),
        schedule=RetrySchedule.from_env(),
        trace_parent_for=trace_lookup(store),
    )
    return [_report(delivery, outcome) for delivery, outcome in sent]


# How far back a scan for ended runs looks, and how much each look re-reads of the previous
# one (a run's end is committed a little after its update time).
RECENT_SECONDS = 120.0
OVERLAP_SECONDS = 5.0


@dataclass
class EndedRunScan:
    last_checked: float | None = None
    handled: dict[str, float] = field(default_factory=dict)  # run id -> when it was enqueued or found without one

    def to_json(self) -> dict[str, Any]:
        return {"last_checked": self.last_checked, "handled": self.handled}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EndedRunScan:
        data = data or {}
        return cls(last_checked=data.get("last_checked"), handled=dict(data.get("handled") or {}))


def enqueue_recently_ended(
    records: RunRecords, store: SubmissionStore, outbox: DeliveryOutbox, scan: EndedRunScan
) -> int:
    """Enqueue the webhooks of runs ended lately without one, and claim their ends again."""
    now = time.time()
    scan.handled = {run_id: seen for run_id, seen in scan.handled.items() if now - seen <= 2 * RECENT_SECONDS}
    since = now - RECENT_SECONDS
    if scan.last_checked is not None:
        since = max(since, scan.last_checked - OVERLAP_SECONDS)
    enqueued = 0
    looked: list[RunView] = []
    for run in records.ended_since(datetime.fromtimestamp(since, tz=UTC), limit=100):
        if run.run_id in scan.handled:
            continue
        ended = any(WebhookEvent(delivery.event).is_end for delivery in outbox.deliveries(run.execution_id))
        parked = run.waits_on_providers  # its execution goes on: no end to send, no status to read
        if not parked and (not ended or run.attempt > 1) and enqueue_webhook(records, store, outbox, run.execution_id):
            enqueued += 1
        scan.handled[run.run_id] = now
        looked.append(run)
    failed = sweep_run_ends(records, store, looked)
    for run_id in failed:
        del scan.handled[run_id]
    if not failed:
        scan.last_checked = now
    return enqueued


def delivery_record(outbox: DeliveryOutbox, delivery: Delivery) -> dict[str, object]:
    """One delivery with every attempt, as the CLI and the HTTP API show it."""
    return {
        "webhookId": delivery.webhook_id,
        "event": delivery.event,
        "nodeId": delivery.node_id or None,
        "state": delivery.state.value,
        "createdAt": delivery.created_at.isoformat(),
        "deliveredAt": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "nextAttemptAt": delivery.next_attempt_at.isoformat() if delivery.state is DeliveryState.PENDING else None,
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


def delivery_report(store: SubmissionStore, execution_id: str) -> list[dict[str, object]]:
    outbox = DeliveryOutbox(store)
    return [delivery_record(outbox, delivery) for delivery in outbox.deliveries(execution_id)]


def redeliver(store: SubmissionStore, execution_id: str, webhook_id: str) -> Delivery:
    """Make an execution's delivery `webhook_id` pending and due now; ExecutionNotFound without it."""
    outbox = DeliveryOutbox(store)
    delivery = outbox.get(webhook_id)
    if delivery is None or delivery.execution_id != execution_id:
        raise ExecutionNotFound(f"execution {execution_id} has no webhook delivery {webhook_id}")
    return outbox.redeliver(webhook_id)
