"""The run workers' heartbeats: one row per worker, written by its main process every BEAT_SECONDS.

What an operator lists (`/api/workers`) and, where the broker carries no ping (SQS), what tells the launcher a
worker is alive. A worker that stops cleanly removes its row; one that dies stops beating, and once its beat
is BEAT_STALE_SECONDS old (a few missed beats: a GC pause or a slow database costs one, not the worker) it is
gone. Rows unseen for PRUNE_SECONDS are deleted by the next beat of any worker.

Wall clocks of the workers and of the reader are compared: keep them in sync (NTP), within a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from video_pipelines.submissions.rows import Rows, insert_into, moment, record
from video_pipelines.submissions.schema import workers
from video_pipelines.submissions.store import SubmissionStore

_W = workers.c

BEAT_SECONDS = 2.0
BEAT_STALE_SECONDS = 12.0
PRUNE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class WorkerBeat:
    """A worker as its last beat saw it: its Celery node name, the queues it consumes, its pool size, the Celery
    task ids its children run (Celery's own count of accepted tasks, kept by the main process), when, and the
    tasks it received but holds until a child is free (prefetched)."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    tasks: tuple[str, ...]
    last_seen: datetime
    waiting: tuple[str, ...] = ()

    @property
    def active(self) -> int:
        return len(self.tasks)

    @property
    def idle(self) -> bool:
        """Whether a task it received now would start at once: a child is free and nothing waits for one."""
        return self.active + len(self.waiting) < self.concurrency

    def fresh(self, now: datetime, stale_seconds: float = BEAT_STALE_SECONDS) -> bool:
        """Whether the worker still counts as alive at `now`: its last beat is younger than `stale_seconds`."""
        return now - self.last_seen < timedelta(seconds=stale_seconds)


def _beat(row: sa.RowMapping) -> WorkerBeat:
    return record(
        WorkerBeat,
        row,
        queues=tuple(json.loads(row["queues"])),
        tasks=tuple(json.loads(row["tasks"])),
        waiting=tuple(json.loads(row["waiting"])),
    )


class WorkerBeats:
    """The workers' beats in the store's database (every process of the deployment sees the same rows)."""

    def __init__(self, store: SubmissionStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self._rows = Rows(store.engine, store.reader)
        self._clock = clock or (lambda: moment(None))

    def record(self, beat: WorkerBeat) -> None:
        """Store `beat` as its worker's row, and delete the rows of workers unseen for PRUNE_SECONDS."""
        values = {
            "name": beat.name,
            "queues": json.dumps(list(beat.queues)),
            "tasks": json.dumps(list(beat.tasks)),
            "waiting": json.dumps(list(beat.waiting)),
            "concurrency": beat.concurrency,
            "last_seen": moment(beat.last_seen),
        }
        with self._rows.engine.begin() as connection:
            insert = insert_into(workers, connection.dialect.name).values(values)
            connection.execute(insert.on_conflict_do_update(index_elements=[_W.name], set_=values))
            pruned = moment(beat.last_seen) - timedelta(seconds=PRUNE_SECONDS)
            connection.execute(workers.delete().where(_W.last_seen < pruned))

    def remove(self, name: str) -> None:
        """The worker `name` stopped: it is no longer listed."""
        self._rows.changed(workers.delete().where(_W.name == name))

    def get(self, name: str) -> WorkerBeat | None:
        """The last beat of the worker `name`, fresh or not; None if it has no row."""
        return self._rows.first(sa.select(workers).where(_W.name == name), _beat)

    def alive(self, now: datetime | None = None) -> list[WorkerBeat]:
        """The workers whose last beat is fresh at `now` (the current time when None), by name."""
        at = moment(now) if now is not None else self._clock()
        # Every row, pruned daily: a few per worker started that day at most.
        return [beat for beat in self._rows.all(sa.select(workers).order_by(_W.name), _beat) if beat.fresh(at)]
