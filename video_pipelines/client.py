"""The Python client: the same calls as the `video-pipelines` CLI.

    from video_pipelines import client
    execution_id = client.submit(plan, idempotency_key="order-42")
    client.wait(execution_id)["status"]  # "completed"

Calls use the deployment of the environment: `DAGSTER_HOME` (default `./.dagster_home`) and
`VIDEO_PIPELINES_DATABASE_URL` (default SQLite in DAGSTER_HOME).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg

from video_pipelines.errors import VideoPipelineError
from video_pipelines.instance import prepare_dagster_home
from video_pipelines.orchestration.executions import find_run
from video_pipelines.orchestration.job import MAX_LEVELS
from video_pipelines.orchestration.status import TERMINAL, execution_status
from video_pipelines.orchestration.webhook_sensors import delivery_report, enqueue_webhook
from video_pipelines.plan import Plan, Priority, parse_plan
from video_pipelines.submissions import SubmissionStore
from video_pipelines.webhooks import DeliveryOutbox

T = TypeVar("T")


@dataclass
class Deployment:
    """The Dagster instance and submission store a client talks to."""

    instance: dg.DagsterInstance
    store: SubmissionStore


@contextmanager
def deployment() -> Iterator[Deployment]:
    """The deployment of the environment (prepares the embedded default when nothing is configured)."""
    home = prepare_dagster_home()
    store = SubmissionStore.from_env(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield Deployment(instance, store)
    finally:
        store.close()


def _on(target: Deployment | None, call: Callable[[Deployment], T]) -> T:
    """`call` on `target`, or on the environment's deployment, opened for this call only."""
    if target is not None:
        return call(target)
    with deployment() as opened:
        return call(opened)


def prepare_plan(
    plan: Mapping[str, Any],
    *,
    base_execution_id: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    priority: str | None = None,
) -> Plan:
    """The plan with the caller's overrides applied, validated; raises PlanValidationError."""
    wire = dict(plan)
    if base_execution_id:
        wire["baseExecutionId"] = base_execution_id
    if priority:
        wire["priority"] = priority
    if webhook_url or webhook_secret:
        hook = dict(wire.get("webhook") or {})
        if webhook_url:
            hook["url"] = webhook_url
        if webhook_secret:
            hook["secret"] = webhook_secret
            hook.pop("secretEnv", None)
        wire["webhook"] = hook
    return parse_plan(wire, max_depth=MAX_LEVELS)


def submit(
    plan: Mapping[str, Any],
    *,
    base_execution_id: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    priority: str | None = None,
    idempotency_key: str | None = None,
    target: Deployment | None = None,
) -> str:
    """Validate and store a plan; returns its execution id at once (the plan sensor launches it)."""
    parsed = prepare_plan(
        plan,
        base_execution_id=base_execution_id,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        priority=priority,
    )
    return _on(target, lambda opened: _store(parsed, idempotency_key, opened.store))


def _store(plan: Plan, idempotency_key: str | None, store: SubmissionStore) -> str:
    submission, _created = store.submit(
        plan.to_wire(include_secret=False),
        base_execution_id=plan.base_execution_id,
        webhook_url=plan.webhook.url if plan.webhook else None,
        webhook_secret=plan.webhook.secret if plan.webhook else None,
        priority=(plan.priority or Priority.NORMAL).value,
        idempotency_key=idempotency_key,
    )
    return submission.execution_id


def status(execution_id: str, *, target: Deployment | None = None) -> dict[str, Any]:
    """The status document of SPEC section 4."""
    return _on(target, lambda opened: execution_status(opened.instance, opened.store, execution_id))


def cancel(execution_id: str, *, target: Deployment | None = None) -> dict[str, Any]:
    """Cancel a pending submission, or terminate its queued or running run; returns the status."""
    if target is None:
        return _on(target, lambda opened: cancel(execution_id, target=opened))
    if target.store.cancel_pending(execution_id):
        # Canceled before it ran: its webhook says so (sent by the webhook_deliveries sensor).
        enqueue_webhook(target.instance, target.store, DeliveryOutbox(target.store), execution_id)
    record = find_run(target.instance, execution_id)
    if record is not None and not record.dagster_run.is_finished:
        target.instance.run_coordinator.cancel_run(record.dagster_run.run_id)
    return execution_status(target.instance, target.store, execution_id)


def deliveries(execution_id: str, *, target: Deployment | None = None) -> list[dict[str, Any]]:
    """Every webhook delivery of an execution and every attempt: time, status code or error."""
    return _on(target, lambda opened: delivery_report(opened.store, execution_id))


def wait(
    execution_id: str, *, timeout: float = 3600.0, poll: float = 0.5, target: Deployment | None = None
) -> dict[str, Any]:
    """Poll until the execution ends; returns its final status."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(execution_id, target=target)
        if current["status"] in TERMINAL:
            return current
        if time.monotonic() > deadline:
            raise VideoPipelineError(
                f"{execution_id} did not finish within {timeout:.0f}s (status {current['status']})"
            )
        time.sleep(poll)
