"""Where a node remembers its provider job: its run's tags, so a retried step resumes it (and the UI shows it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Protocol

import sqlalchemy as sa

from video_pipelines.errors import TransientStorageError

# A run tag per node with a provider job in flight: `video/provider_job/<node id>` = the job id.
PROVIDER_JOB_TAG_PREFIX = "video/provider_job/"
# A run tag per node that parked on its provider job: `video/parked/<node id>` = "<provider> <job id>".
PARKED_TAG_PREFIX = "video/parked/"


class _Tagged(Protocol):
    @property
    def tags(self) -> Mapping[str, str]: ...


class RunTags(Protocol):
    def get_run_by_id(self, run_id: str, /) -> _Tagged | None: ...

    def add_run_tags(self, run_id: str, new_tags: Mapping[str, str], /) -> None: ...


class RunTagLedger:
    """A node's `JobLedger` on its run's tags.

    Dagster writes run tags read-merge-write, so concurrent writes lose one (measured: 40 of 60 lost):
    writes take turns (`lock`) and are read back and retried.
    """

    WRITE_ATTEMPTS = 3

    def __init__(self, tags: RunTags, run_id: str, node_id: str, lock: threading.Lock) -> None:
        self._tags = tags
        self._run_id = run_id
        self._key = PROVIDER_JOB_TAG_PREFIX + node_id
        self._lock = lock

    def recall(self) -> str | None:
        return tag_of(self._tags, self._run_id, self._key)

    def remember(self, job_id: str) -> None:
        # run_job cancels the job it could not remember: a retried step creates it again.
        write_tag(self._tags, self._run_id, self._key, job_id, self._lock)


def tag_of(tags: RunTags, run_id: str, key: str) -> str | None:
    run = tags.get_run_by_id(run_id)
    return run.tags.get(key) if run is not None else None


# A write the database dropped (a restart, a failover: ~2-5 s) is made again after these pauses; a tag is set
# again to the same value harmlessly, so one whose commit went through with its answer lost is no loss either.
DATABASE_GONE_PAUSES = (0.5, 1.0, 2.0, 4.0)


def write_tag(tags: RunTags, run_id: str, key: str, value: str, lock: threading.Lock) -> None:
    """Set one tag of a run, read back (see `RunTagLedger`); TransientStorageError if it does not hold."""
    pauses = iter(DATABASE_GONE_PAUSES)
    lost: Exception | None = None
    with lock:
        writes = 0
        while writes < RunTagLedger.WRITE_ATTEMPTS:
            try:
                tags.add_run_tags(run_id, {key: value})
                if tag_of(tags, run_id, key) == value:
                    return
                writes += 1
            except sa.exc.OperationalError as exc:
                lost = exc
                pause = next(pauses, None)
                if pause is None:
                    break
                time.sleep(pause)
    why = "the database was unreachable" if lost is not None else f"it did not hold after {writes} writes"
    raise TransientStorageError(f"run {run_id}: tag {key} could not be set: {why}") from lost
