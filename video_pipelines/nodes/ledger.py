"""Where a node remembers its provider job: its run's tags, so a retried step resumes it (and the UI shows it)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from video_pipelines.errors import TransientStorageError

# A run tag per node with a provider job in flight: `video/provider_job/<node id>` = the job id.
PROVIDER_JOB_TAG_PREFIX = "video/provider_job/"


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
        run = self._tags.get_run_by_id(self._run_id)
        return run.tags.get(self._key) if run is not None else None

    def remember(self, job_id: str) -> None:
        with self._lock:
            for _ in range(self.WRITE_ATTEMPTS):
                self._tags.add_run_tags(self._run_id, {self._key: job_id})
                if self.recall() == job_id:
                    return
        # run_job cancels the job it could not remember: a retried step creates it again.
        raise TransientStorageError(
            f"run {self._run_id}: tag {self._key} did not hold after {self.WRITE_ATTEMPTS} writes"
        )
