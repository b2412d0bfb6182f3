"""The Python client: the CLI's calls, over the HTTP API when `VIDEO_PIPELINES_API_URL` is set, else on the
local deployment. Only `submit` makes a missing instance (the others say where they looked).

    execution_id = client.submit(plan, client.SubmitOptions(idempotency_key="order-42"))
    client.wait(execution_id)["status"]  # "completed"
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from video_pipelines.doors import API_KEY_ENV, API_URL_ENV
from video_pipelines.errors import ExecutionNotFound, UsageError
from video_pipelines.plan.overrides import NO_OPTIONS
from video_pipelines.plan.overrides import SubmitOptions as SubmitOptions  # `client.SubmitOptions(...)`

if TYPE_CHECKING:
    import dagster as dg

    from video_pipelines.doors.api_client import ApiClient
    from video_pipelines.orchestration.run_records import DagsterRunRecords
    from video_pipelines.submissions import SubmissionStore

T = TypeVar("T")


@dataclass
class Deployment:
    """The submission store and Dagster instance of the instance folder `home`, each opened at its first use (a
    submit needs only the store, and opening an instance costs seconds); `created`: `home` holds no instance yet,
    and the store's first use makes one, so a plan refused before it leaves no folder behind."""

    home: Path
    created: bool = False
    _closing: ExitStack = field(default_factory=ExitStack, repr=False)

    @cached_property
    def store(self) -> SubmissionStore:
        from video_pipelines.deployment.instance import prepare_dagster_home
        from video_pipelines.submissions.store import SubmissionStore

        return self._closing.enter_context(SubmissionStore.from_env(prepare_dagster_home(self.home)))

    @cached_property
    def instance(self) -> dg.DagsterInstance:
        import dagster as dg

        from video_pipelines.deployment.instance import prepare_dagster_home

        prepare_dagster_home(self.home)  # exports DAGSTER_HOME, which the instance reads
        return self._closing.enter_context(dg.DagsterInstance.get())

    @property
    def where(self) -> str:
        from video_pipelines.deployment.instance import describe_instance

        return describe_instance(self.home)

    def daemon_problem(self) -> str | None:
        """Why no daemon would launch this deployment's submissions; None when they beat. Read from the run
        storage when its place is known, else asked of Dagster as `/health` does."""
        from video_pipelines.deployment.daemons import (
            DAEMON_MAX_AGE_SECONDS,
            LAUNCHING_DAEMONS,
            read_heartbeats,
            stale_daemons,
        )

        beats = read_heartbeats(self.home, self.store)
        if beats is None:
            beats = {kind: beat.timestamp for kind, beat in self.instance.get_daemon_heartbeats().items()}
        stale = stale_daemons(beats, LAUNCHING_DAEMONS, DAEMON_MAX_AGE_SECONDS, time.time())
        return f"is dagster-daemon running? {', '.join(stale)}" if stale else None

    @property
    def records(self) -> DagsterRunRecords:
        from video_pipelines.orchestration.run_records import DagsterRunRecords

        return DagsterRunRecords(self.instance)

    # The calls of `ApiClient`, on this deployment as an operator.
    def submit(self, plan: Mapping[str, Any], options: SubmitOptions = NO_OPTIONS) -> str:
        from video_pipelines import executions

        wire = options.apply(plan)
        # Admitted before the store or Dagster is opened: a refused plan leaves no folder, and a plan without a
        # base (the base is looked up in the runs) is submitted without importing Dagster.
        admission = executions.admit(wire)
        if admission.base.readiness is executions.BaseReadiness.UNCHECKED:
            admission = executions.admit(wire, self.records, self.store)
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

    def logs(self, execution_id: str, *, cursor: str | None = None, limit: int = 200) -> dict[str, Any]:
        from video_pipelines.executions.logs import read_logs

        return read_logs(self.records, self.store, execution_id, cursor=cursor, limit=limit).to_wire()

    def follow_logs(
        self, execution_id: str, *, cursor: str | None = None, poll: float = 0.5
    ) -> Iterator[dict[str, Any]]:
        from video_pipelines.executions.logs import read_logs

        limit = 200
        while True:
            page = read_logs(self.records, self.store, execution_id, cursor=cursor, limit=limit)
            yield from (line.to_wire() for _, line in page.lines)
            cursor = page.cursor
            if page.is_last(limit):
                return
            if len(page.lines) < limit:
                time.sleep(poll)

    def costs(self, *, group_by: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        from video_pipelines.executions import OPERATOR
        from video_pipelines.executions.costs import GroupBy, cost_report, node_spends

        spends = list(node_spends(OPERATOR, self.records, self.store, start=_moment(start), end=_moment(end)))
        return cost_report(spends, GroupBy(group_by or GroupBy.PROVIDER)).to_wire()

    def cost_suggestions(self, *, start: str | None = None, end: str | None = None) -> list[dict[str, Any]]:
        from video_pipelines.api.settings import ApiSettings
        from video_pipelines.executions import OPERATOR
        from video_pipelines.executions.costs import suggestions_for

        settings = ApiSettings.from_env()  # the deployment's API: where the fetches it records come from
        found = suggestions_for(
            OPERATOR,
            self.records,
            self.store,
            start=_moment(start),
            end=_moment(end),
            served=settings.artifact_urls,
            grace_seconds=settings.unfetched_grace_seconds,
        )
        return [each.to_wire() for each in found]

    def retry_failed(self, *, since: str | None = None, limit: int = 100, status: str = "failed") -> dict[str, Any]:
        from video_pipelines.executions import OPERATOR
        from video_pipelines.executions.dead_letters import retry_all
        from video_pipelines.vocabulary import ExecutionState

        done = retry_all(
            OPERATOR, self.records, self.store, status=ExecutionState(status), since=_moment(since), limit=limit
        )
        return done.to_wire()


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time as the API reads it (UTC without an offset); UsageError naming the value otherwise."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time (e.g. 2026-12-07T09:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Where calls go: a local deployment (as an operator) or the HTTP API (as the key's tenant).
Target: TypeAlias = "Deployment | ApiClient"


@contextmanager
def deployment(*, create: bool = True) -> Iterator[Deployment]:
    """The deployment of the environment; without `create`, a missing instance is a UsageError."""
    from video_pipelines.deployment.instance import dagster_home_path, is_new_instance

    home = dagster_home_path()
    created = is_new_instance(home)
    if created and not create:
        raise UsageError(
            f"no Dagster instance at {home}: set DAGSTER_HOME to the deployment's instance folder "
            f"(or {API_URL_ENV} and {API_KEY_ENV} to use its HTTP API)"
        )
    with ExitStack() as closing:
        yield Deployment(home, created, closing)


@contextmanager
def connect(*, create: bool = True) -> Iterator[Target]:
    """The environment's target: the API when `VIDEO_PIPELINES_API_URL` is set, else the local deployment."""
    api = None
    if os.environ.get(API_URL_ENV, "").strip():
        # Imported only for the API: its httpx (with click and rich) costs a local command a tenth of a second.
        from video_pipelines.doors.api_client import ApiClient

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
        if not isinstance(target, Deployment) or target.where in str(exc):
            raise
        raise ExecutionNotFound(f"{exc} in {target.where}") from exc


def submit(plan: Mapping[str, Any], options: SubmitOptions = NO_OPTIONS, *, target: Target | None = None) -> str:
    """Validate and store a plan; returns its execution id at once (a variant may precede its base's end)."""
    return _on(target, lambda opened: opened.submit(plan, options), create=True)


def status(execution_id: str, *, target: Target | None = None) -> dict[str, Any]:
    """The status document of an execution (with `uiUrl` where the UI is known)."""
    return _on(target, lambda opened: opened.status(execution_id))


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
        if not isinstance(opened, Deployment):
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

    from video_pipelines.doors.api_client import poll_until_ended  # as `connect` does, only when waited on

    def until_ended(opened: Target) -> dict[str, Any]:
        return poll_until_ended(lambda: status(execution_id, target=opened), execution_id, timeout=timeout, poll=poll)

    return _on(target, until_ended)


def logs(
    execution_id: str, *, cursor: str | None = None, limit: int = 200, target: Target | None = None
) -> dict[str, Any]:
    """One page of the execution's log after `cursor`: `{"logs": [{"at", "level", "node", "message"}], "cursor"}`."""
    return _on(target, lambda opened: opened.logs(execution_id, cursor=cursor, limit=limit))


def follow_logs(
    execution_id: str, *, cursor: str | None = None, target: Target | None = None
) -> Iterator[dict[str, Any]]:
    """The execution's log lines as they are written, until it has ended and every line was read."""
    if target is None:
        with connect(create=False) as opened:
            yield from opened.follow_logs(execution_id, cursor=cursor)
        return
    yield from target.follow_logs(execution_id, cursor=cursor)


def costs(
    *, group_by: str | None = None, start: str | None = None, end: str | None = None, target: Target | None = None
) -> dict[str, Any]:
    """What the executions cost (over the API: the key's tenant's; locally: every tenant's), grouped."""
    return _on(target, lambda opened: opened.costs(group_by=group_by, start=start, end=end))


def cost_suggestions(
    *, start: str | None = None, end: str | None = None, target: Target | None = None
) -> list[dict[str, Any]]:
    """Ways to spend less, each with what it would have saved, from the executions' own records."""
    return _on(target, lambda opened: opened.cost_suggestions(start=start, end=end))


def retry_failed(
    *, since: str | None = None, limit: int = 100, status: str = "failed", target: Target | None = None
) -> dict[str, Any]:
    """Retry up to `limit` failed (or canceled) executions since `since`; returns what was retried and skipped."""
    return _on(target, lambda opened: opened.retry_failed(since=since, limit=limit, status=status))
