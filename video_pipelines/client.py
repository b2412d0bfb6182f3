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

from video_pipelines import executions
from video_pipelines.errors import VideoPipelineError
from video_pipelines.executions import admit
from video_pipelines.instance import prepare_dagster_home
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan.overrides import apply_overrides
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import TERMINAL_STATES

T = TypeVar("T")


@dataclass
class Deployment:
    """The Dagster instance and submission store a client talks to."""

    instance: dg.DagsterInstance
    store: SubmissionStore

    @property
    def records(self) -> DagsterRunRecords:
        return DagsterRunRecords(self.instance)


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
    """Validate and store a plan; returns its execution id at once (the plan sensor launches it).

    The base is not looked up here: a variant may be submitted before its base ends.
    """
    overridden = apply_overrides(
        plan,
        base_execution_id=base_execution_id,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        priority=priority,
    )
    admission = admit(overridden)
    return _on(target, lambda opened: executions.submit(admission, opened.store, idempotency_key=idempotency_key))


def status(execution_id: str, *, target: Deployment | None = None) -> dict[str, Any]:
    """The status document of an execution (`video-pipelines status`)."""
    return _on(target, lambda opened: executions.execution_status(opened.records, opened.store, execution_id).to_wire())


def cancel(execution_id: str, *, target: Deployment | None = None) -> dict[str, Any]:
    """Cancel a pending submission, or terminate its queued or running run; returns the status."""
    return _on(target, lambda opened: executions.cancel(opened.records, opened.store, execution_id).to_wire())


def deliveries(execution_id: str, *, target: Deployment | None = None) -> list[dict[str, Any]]:
    """Every webhook delivery of an execution and every attempt: time, status code or error."""
    return _on(target, lambda opened: executions.delivery_report(opened.store, execution_id))


def wait(
    execution_id: str, *, timeout: float = 3600.0, poll: float = 0.5, target: Deployment | None = None
) -> dict[str, Any]:
    """Poll until the execution ends; returns its final status."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(execution_id, target=target)
        if current["status"] in TERMINAL_STATES:
            return current
        if time.monotonic() > deadline:
            raise VideoPipelineError(
                f"{execution_id} did not finish within {timeout:.0f}s (status {current['status']})"
            )
        time.sleep(poll)
