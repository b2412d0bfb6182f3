"""What an operator sees of the deployment's run workers and run queue: the workers' beats in the deployment's
database (on every broker: SQS carries no Celery inspection), and Dagster's queued runs by priority.

The beats and Celery's inspection read the same thing, each worker's own count of the tasks its children run
(`worker_state.active_requests` in its main process); a beat is at most BEAT_SECONDS old, where an inspection
waits its whole timeout on every call (Celery cannot know how many workers will answer) and sees nothing on SQS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
from dagster._core.storage.tags import PRIORITY_TAG
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.orchestration.run_records import JOB_NAME
from video_pipelines.orchestration.workers.celery_launcher import VideoCeleryRunLauncher
from video_pipelines.submissions.worker_beats import WorkerBeat, WorkerBeats
from video_pipelines.vocabulary import Priority, WireRecord


@dataclass(frozen=True)
class WorkerView(WireRecord):
    """One live run worker: its node name, how many runs it takes at once, the runs it runs now."""

    name: str
    concurrency: int
    active: int
    runs: list[str]  # the Dagster runs of its active tasks
    queues: list[str]
    last_seen: datetime


def _runs_of_tasks(instance: dg.DagsterInstance, task_ids: Sequence[str]) -> dict[str, str]:
    if not task_ids:
        return {}
    runs = instance.get_runs(filters=dg.RunsFilter(tags={DAGSTER_CELERY_TASK_ID_TAG: list(task_ids)}))
    return {run.tags[DAGSTER_CELERY_TASK_ID_TAG]: run.run_id for run in runs}


def live_workers(instance: dg.DagsterInstance, beats: WorkerBeats) -> list[WorkerView]:
    """The run workers whose beat is fresh, by name; [] when the instance launches runs through no broker."""
    if not isinstance(instance.run_launcher, VideoCeleryRunLauncher):
        return []
    alive: list[WorkerBeat] = beats.alive()
    runs = _runs_of_tasks(instance, [task for beat in alive for task in beat.tasks])
    return [
        WorkerView(
            name=beat.name,
            concurrency=beat.concurrency,
            active=beat.active,
            runs=sorted(runs[task] for task in beat.tasks if task in runs),
            queues=list(beat.queues),
            last_seen=beat.last_seen,
        )
        for beat in alive
    ]


def _priority(value: int) -> Priority:
    # A run tagged by hand (the Dagster UI) may carry any number: above normal is high, below is low.
    return Priority.HIGH if value > 0 else Priority.LOW if value < 0 else Priority.NORMAL


def queued_runs_by_priority(instance: dg.DagsterInstance) -> dict[Priority, int]:
    """The runs of `execute_plan` in Dagster's run queue, by the plan priority their `dagster/priority` tag says."""
    queued = instance.get_runs(filters=dg.RunsFilter(job_name=JOB_NAME, statuses=[dg.DagsterRunStatus.QUEUED]))
    counts = Counter(_priority(priority_of_tag(run.tags.get(PRIORITY_TAG))) for run in queued)
    return {priority: counts.get(priority, 0) for priority in Priority}
