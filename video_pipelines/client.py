"""The Python client: the same calls as the `video-pipelines` CLI.

    from video_pipelines import client
    execution_id = client.submit(plan, idempotency_key="order-42")
    client.wait(execution_id)["status"]  # "completed"

Calls go where the environment says (`connect`). With `VIDEO_PIPELINES_API_URL` and
`VIDEO_PIPELINES_API_KEY` set they go to the HTTP API (`api_client.ApiClient`) as that key's
tenant, and this machine needs neither Dagster nor the database: both are imported only for
a local deployment. Otherwise they use the local deployment as an operator (every tenant):
`DAGSTER_HOME` (default `./.dagster_home`) and `VIDEO_PIPELINES_DATABASE_URL` (default SQLite
in DAGSTER_HOME).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from video_pipelines.api_client import ApiClient, poll_until_ended
from video_pipelines.plan.overrides import apply_overrides

if TYPE_CHECKING:
    import dagster as dg

    from video_pipelines.orchestration.run_records import DagsterRunRecords
    from video_pipelines.submissions import SubmissionStore

T = TypeVar("T")


@dataclass
class Deployment:
    """The Dagster instance and submission store a client talks to."""

    instance: dg.DagsterInstance
    store: SubmissionStore

    @property
    def records(self) -> DagsterRunRecords:
        from video_pipelines.orchestration.run_records import DagsterRunRecords

        return DagsterRunRecords(self.instance)


# Where calls go: a local deployment (as an operator) or the HTTP API (as the key's tenant).
Target: TypeAlias = "Deployment | ApiClient"


@contextmanager
def deployment() -> Iterator[Deployment]:
    """The deployment of the environment (prepares the embedded default when nothing is configured)."""
    import dagster as dg

    from video_pipelines.instance import prepare_dagster_home
    from video_pipelines.submissions import SubmissionStore

    home = prepare_dagster_home()
    store = SubmissionStore.from_env(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield Deployment(instance, store)
    finally:
        store.close()


@contextmanager
def connect() -> Iterator[Target]:
    """The environment's target: the API when `VIDEO_PIPELINES_API_URL` is set, else the local deployment."""
    api = ApiClient.from_env()
    if api is None:
        with deployment() as opened:
            yield opened
        return
    with api:
        yield api


def _on(target: Target | None, local: Callable[[Deployment], T], remote: Callable[[ApiClient], T]) -> T:
    """`local` or `remote` on `target`, or on the environment's target, opened for this call only."""
    if target is None:
        with connect() as opened:
            return _on(opened, local, remote)
    if isinstance(target, ApiClient):
        return remote(target)
    return local(target)


def submit(
    plan: Mapping[str, Any],
    *,
    base_execution_id: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    priority: str | None = None,
    idempotency_key: str | None = None,
    target: Target | None = None,
) -> str:
    """Validate and store a plan; returns its execution id at once (the plan sensor launches it).

    The base is not looked up here: a variant may be submitted before its base ends. Over
    the API the plan is validated there (the same checks; a PlanValidationError all the same).
    """

    def local(opened: Deployment) -> str:
        from video_pipelines import executions

        overridden = apply_overrides(
            plan,
            base_execution_id=base_execution_id,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            priority=priority,
        )
        admission = executions.admit(overridden)
        return executions.submit(admission, opened.store, idempotency_key=idempotency_key)

    def remote(api: ApiClient) -> str:
        return api.submit(
            plan,
            base_execution_id=base_execution_id,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            priority=priority,
            idempotency_key=idempotency_key,
        )

    return _on(target, local, remote)


def status(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """The status document of an execution (`video-pipelines status`)."""

    def local(opened: Deployment) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.execution_status(opened.records, opened.store, execution_id).to_wire()

    return _on(target, local, lambda api: api.status(execution_id))


def cancel(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """Cancel a pending submission, or terminate its queued or running run; returns the status."""

    def local(opened: Deployment) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.cancel(opened.records, opened.store, execution_id).to_wire()

    return _on(target, local, lambda api: api.cancel(execution_id))


def retry(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """Run a failed or canceled execution again (its completed nodes are reused); returns the status."""

    def local(opened: Deployment) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.retry(opened.records, opened.store, execution_id).to_wire()

    return _on(target, local, lambda api: api.retry(execution_id))


def deliveries(execution_id: str, *, target: Target | None = None) -> list[dict[str, Any]]:
    """Every webhook delivery of an execution and every attempt: time, status code or error."""

    def local(opened: Deployment) -> list[dict[str, Any]]:
        from video_pipelines import executions

        return executions.delivery_report(opened.store, execution_id)

    return _on(target, local, lambda api: api.deliveries(execution_id))


def redeliver(webhook_id: str, *, execution_id: str | None = None, target: Target | None = None) -> dict[str, Any]:
    """Send a webhook event again with the same webhook-id; returns its delivery record, due now.

    The execution is the one the outbox records for `webhook_id` (over the API: the one the
    id names, unless `execution_id` is given).
    """

    def local(opened: Deployment) -> dict[str, Any]:
        from video_pipelines import executions
        from video_pipelines.errors import ExecutionNotFound
        from video_pipelines.webhooks import DeliveryOutbox

        outbox = DeliveryOutbox(opened.store)
        recorded = outbox.get(webhook_id)
        owner = execution_id or (recorded.execution_id if recorded is not None else None)
        if owner is None:
            raise ExecutionNotFound(f"no webhook delivery {webhook_id}")
        return executions.delivery_record(outbox, executions.redeliver(opened.store, owner, webhook_id))

    def remote(api: ApiClient) -> dict[str, Any]:
        from video_pipelines.errors import UsageError
        from video_pipelines.webhooks import execution_of_webhook

        named = execution_id or execution_of_webhook(webhook_id)
        if named is None:
            raise UsageError(f"{webhook_id} is not a webhook id (msg_<execution id>_<event>...)")
        return api.redeliver(named, webhook_id)

    return _on(target, local, remote)


def wait(
    execution_id: str, *, timeout: float = 3600.0, poll: float = 0.5, target: Target | None = None
) -> dict[str, Any]:
    """Poll until the execution ends; returns its final status."""

    def until_ended(opened: Target) -> dict[str, Any]:
        return poll_until_ended(lambda: status(execution_id, target=opened), execution_id, timeout=timeout, poll=poll)

    return _on(target, until_ended, until_ended)
