"""What an operator sees of the deployment's run workers and run queue: Celery's own inspection of the workers
that consume the deployment's queue, and Dagster's queued runs by priority."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from celery import Celery  # type: ignore[import-untyped]  # celery ships no types
from dagster._core.storage.tags import PRIORITY_TAG
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from kombu.exceptions import OperationalError as BrokerError

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.errors import VideoPipelineError
from video_pipelines.orchestration.run_records import JOB_NAME
from video_pipelines.orchestration.workers.celery_launcher import VideoCeleryRunLauncher
from video_pipelines.vocabulary import Priority


class BrokerUnreachable(VideoPipelineError):
    """The broker did not answer: nothing can be said about the workers."""


@dataclass(frozen=True)
class WorkerView:
    """One run worker that answered: its node name, how many runs it takes at once, the runs it runs now."""

    name: str
    concurrency: int
    active: int
    runs: list[str]  # the Dagster runs of its active tasks
    queues: list[str]
    last_seen: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "active": self.active,
            "runs": self.runs,
            "queues": self.queues,
            "lastSeen": self.last_seen.isoformat(),
        }


def celery_app(instance: dg.DagsterInstance) -> tuple[Celery, str] | None:
    """The Celery app and queue of the instance's run launcher; None when runs do not go through a broker."""
    launcher = instance.run_launcher
    if not isinstance(launcher, VideoCeleryRunLauncher):
        return None
    return launcher.celery, launcher.settings.queue


def _runs_of_tasks(instance: dg.DagsterInstance, task_ids: Sequence[str]) -> dict[str, str]:
    if not task_ids:
        return {}
    runs = instance.get_runs(filters=dg.RunsFilter(tags={DAGSTER_CELERY_TASK_ID_TAG: list(task_ids)}))
    return {run.tags[DAGSTER_CELERY_TASK_ID_TAG]: run.run_id for run in runs}


def inspect_workers(instance: dg.DagsterInstance, timeout: float) -> list[WorkerView]:
    """The workers consuming the deployment's queue that answer within `timeout` seconds ([] without a broker).
    Raises BrokerUnreachable when the broker itself does not answer in that time."""
    found = celery_app(instance)
    if found is None:
        return []
    app, queue = found
    try:
        # A bounded connection first: inspecting through a dead broker would retry for much longer.
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            inspect = app.control.inspect(timeout=timeout, connection=connection)
            stats: Mapping[str, Mapping[str, Any]] = inspect.stats() or {}
            active: Mapping[str, Sequence[Mapping[str, Any]]] = inspect.active() or {}
            queues: Mapping[str, Sequence[Mapping[str, Any]]] = inspect.active_queues() or {}
    except (BrokerError, OSError) as exc:
        raise BrokerUnreachable(f"the broker did not answer within {timeout:g} s: {type(exc).__name__}") from None
    seen = datetime.now(UTC)
    runs = _runs_of_tasks(instance, [str(task.get("id")) for tasks in active.values() for task in tasks])
    views = []
    for name, consumed in sorted(queues.items()):
        names = [str(entry.get("name")) for entry in consumed]
        if queue not in names:
            continue  # another deployment's worker on a shared broker
        tasks = active.get(name, [])
        pool = stats.get(name, {}).get("pool", {})
        views.append(
            WorkerView(
                name=name,
                concurrency=int(pool.get("max-concurrency", 0)),
                active=len(tasks),
                runs=sorted(runs[str(task.get("id"))] for task in tasks if str(task.get("id")) in runs),
                queues=names,
                last_seen=seen,
            )
        )
    return views


def _priority(value: int) -> Priority:
    # A run tagged by hand (the Dagster UI) may carry any number: above normal is high, below is low.
    return Priority.HIGH if value > 0 else Priority.LOW if value < 0 else Priority.NORMAL


def queued_runs_by_priority(instance: dg.DagsterInstance) -> dict[Priority, int]:
    """The runs of `execute_plan` in Dagster's run queue, by the plan priority their `dagster/priority` tag says."""
    queued = instance.get_runs(filters=dg.RunsFilter(job_name=JOB_NAME, statuses=[dg.DagsterRunStatus.QUEUED]))
    counts = Counter(_priority(priority_of_tag(run.tags.get(PRIORITY_TAG))) for run in queued)
    return {priority: counts.get(priority, 0) for priority in Priority}
