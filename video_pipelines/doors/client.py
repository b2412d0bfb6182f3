"""The Python client: the CLI's calls, over the HTTP API when `VIDEO_PIPELINES_API_URL` is set, else on the
local deployment. Only `submit` makes a missing instance (the others say where they looked).

    execution_id = client.submit(plan, client.SubmitOptions(idempotency_key="order-42"))
    client.wait(execution_id)["status"]  # "completed"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from video_pipelines.doors.api_client import API_KEY_ENV, API_URL_ENV, ApiClient, poll_until_ended
from video_pipelines.errors import ExecutionNotFound, UsageError
from video_pipelines.plan.overrides import NO_OPTIONS
from video_pipelines.plan.overrides import SubmitOptions as SubmitOptions  # `client.SubmitOptions(...)`

if TYPE_CHECKING:
    import dagster as dg

    from video_pipelines.orchestration.run_records import DagsterRunRecords
    from video_pipelines.submissions import SubmissionStore

T = TypeVar("T")

UI_URL_ENV = "VIDEO_PIPELINES_UI_URL"


@dataclass
class Deployment:
    """The Dagster instance and submission store a client talks to; `created`: a new, empty instance."""

    instance: dg.DagsterInstance
    store: SubmissionStore
    home: Path
    created: bool = False

    @property
    def where(self) -> str:
        from video_pipelines.deployment.instance import describe_instance

        return describe_instance(self.home)

    def daemon_problem(self) -> str | None:
        """Why no daemon would launch this deployment's submissions, as `/health` sees it; None when one beats."""
        from video_pipelines.api.health import CheckFailed, check_daemon
        from video_pipelines.api.settings import ApiSettings

        try:
            check_daemon(self.instance, ApiSettings.daemon_max_age_seconds)
        except CheckFailed as exc:
            return str(exc)
        return None

    @property
    def records(self) -> DagsterRunRecords:
        from video_pipelines.orchestration.run_records import DagsterRunRecords

        return DagsterRunRecords(self.instance)

    # The calls of `ApiClient`, on this deployment as an operator.
    def submit(self, plan: Mapping[str, Any], options: SubmitOptions = NO_OPTIONS) -> str:
        from video_pipelines import executions

        admission = executions.admit(options.apply(plan))
        return executions.submit(admission, self.store, idempotency_key=options.idempotency_key)

    def status(self, execution_id: str) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.execution_status(self.records, self.store, execution_id).to_wire()

    def cancel(self, execution_id: str) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.cancel(self.records, self.store, execution_id).to_wire()

    def retry(self, execution_id: str) -> dict[str, Any]:
        from video_pipelines import executions

        return executions.retry(self.records, self.store, execution_id).to_wire()

    def deliveries(self, execution_id: str) -> list[dict[str, Any]]:
        from video_pipelines import executions

        return executions.delivery_report(self.store, execution_id)


# Where calls go: a local deployment (as an operator) or the HTTP API (as the key's tenant).
Target: TypeAlias = "Deployment | ApiClient"


@contextmanager
def deployment(*, create: bool = True) -> Iterator[Deployment]:
    """The deployment of the environment; without `create`, a missing instance is a UsageError."""
    from video_pipelines.deployment.connection import open_deployment
    from video_pipelines.deployment.instance import dagster_home_path, is_new_instance

    home = dagster_home_path()
    created = is_new_instance(home)
    if created and not create:
        raise UsageError(
            f"no Dagster instance at {home}: set DAGSTER_HOME to the deployment's instance folder "
            f"(or {API_URL_ENV} and {API_KEY_ENV} to use its HTTP API)"
        )
    with open_deployment(home) as (instance, store):
        yield Deployment(instance, store, home, created)


@contextmanager
def connect(*, create: bool = True) -> Iterator[Target]:
    """The environment's target: the API when `VIDEO_PIPELINES_API_URL` is set, else the local deployment."""
    api = ApiClient.from_env()
    opening: AbstractContextManager[Target] = deployment(create=create) if api is None else api
    with opening as opened:
        yield opened


def _on(target: Target | None, call: Callable[[Target], T], *, create: bool = False) -> T:
    """`call` on `target`, or on the environment's target opened for this call only."""
    if target is None:
        with connect(create=create) as opened:
            return _on(opened, call)
    try:
        return call(target)
    except ExecutionNotFound as exc:
        # The API's error says where it looked (`at the API ...`), as does a nested call's (wait's status).
        if isinstance(target, ApiClient) or target.where in str(exc):
            raise
        raise ExecutionNotFound(f"{exc} in {target.where}") from exc


def with_ui_link(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with `uiUrl`, its run's page in the Dagster UI at $VIDEO_PIPELINES_UI_URL, when known."""
    base = os.environ.get(UI_URL_ENV, "").strip().rstrip("/")
    run_id = document.get("runId")
    if not base or not run_id:
        return document
    return {**document, "uiUrl": f"{base}/runs/{run_id}"}


def submit(plan: Mapping[str, Any], options: SubmitOptions = NO_OPTIONS, *, target: Target | None = None) -> str:
    """Validate and store a plan; returns its execution id at once (a variant may precede its base's end)."""
    return _on(target, lambda opened: opened.submit(plan, options), create=True)


def status(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """The status document of an execution, with `uiUrl` when it can."""
    return with_ui_link(_on(target, lambda opened: opened.status(execution_id)))


def cancel(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """Cancel an execution; returns its status."""
    return _on(target, lambda opened: opened.cancel(execution_id))


def retry(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """Retry a failed or canceled execution; returns its status."""
    return _on(target, lambda opened: opened.retry(execution_id))


def deliveries(execution_id: str, *, target: Target | None = None) -> list[dict[str, Any]]:
    """Every webhook delivery of an execution and every attempt: time, status code or error."""
    return _on(target, lambda opened: opened.deliveries(execution_id))


def redeliver(webhook_id: str, *, execution_id: str | None = None, target: Target | None = None) -> dict[str, Any]:
    """Send a webhook event again with the same webhook-id; returns its delivery record, due now."""

    def redeliver_on(opened: Target) -> dict[str, Any]:
        if isinstance(opened, ApiClient):
            from video_pipelines.webhooks import execution_of_webhook

            named = execution_id or execution_of_webhook(webhook_id)
            if named is None:
                raise UsageError(f"{webhook_id} is not a webhook id (msg_<execution id>_<event>...)")
            return opened.redeliver(named, webhook_id)
        from video_pipelines import executions
        from video_pipelines.webhooks import DeliveryOutbox

        outbox = DeliveryOutbox(opened.store)
        recorded = outbox.get(webhook_id)
        owner = execution_id or (recorded.execution_id if recorded is not None else None)
        if owner is None:
            raise ExecutionNotFound(f"no webhook delivery {webhook_id}")
        return executions.delivery_record(outbox, executions.redeliver(opened.store, owner, webhook_id))

    return _on(target, redeliver_on)


def wait(
    execution_id: str, *, timeout: float = 3600.0, poll: float = 0.5, target: Target | None = None
) -> dict[str, Any]:
    """Poll until the execution ends; returns its final status."""

    def until_ended(opened: Target) -> dict[str, Any]:
        return poll_until_ended(lambda: status(execution_id, target=opened), execution_id, timeout=timeout, poll=poll)

    return _on(target, until_ended)
