"""Fetches of stored videos through the API's `/artifacts` route: per video (its SHA-256), when it was first and
last fetched and how often. The costs' "videos never fetched" suggestion reads them.

A video player fetches one video as many range requests; so does a download manager, and a client may retry.
`FetchWindow` makes those one fetch: a client's requests for a video within `window_seconds` of the last one
recorded are not written again. The window lives in the API process's memory (a database write per range
request is what it saves); several API processes each write a client's first request, which counts it more than
once, never less: whether a video was fetched at all, the fact the suggestion rests on, is exact.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from video_pipelines.submissions.rows import Rows, as_utc, insert_into, moment, record
from video_pipelines.submissions.schema import schema_version, submissions, video_fetches
from video_pipelines.submissions.store import SubmissionStore

_F = video_fetches.c
# The migration whose table holds fetches: since it was applied, every fetch through the API is recorded.
RECORDING_VERSION = 12
# Placeholders per IN (...) query: under SQLite's and PostgreSQL's limits.
_BATCH = 500
DEFAULT_WINDOW_SECONDS = 60.0
# Clients remembered by a window at most; the oldest are forgotten first (they are then counted again).
DEFAULT_WINDOW_ENTRIES = 10_000


@dataclass(frozen=True)
class VideoFetch:
    sha256: str
    first_fetched_at: datetime
    last_fetched_at: datetime
    fetches: int


def _fetch(row: sa.RowMapping) -> VideoFetch:
    return record(VideoFetch, row)


class VideoFetches:
    """The fetch records on the store's database, and what the suggestion needs beside them."""

    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def record(self, sha256: str, now: datetime | None = None) -> None:
        """Count one fetch of the video (the first one sets `first_fetched_at`)."""
        at = moment(now)
        with self._rows.engine.begin() as connection:
            insert = insert_into(video_fetches, connection.dialect.name).values(
                sha256=sha256, first_fetched_at=at, last_fetched_at=at, fetches=1
            )
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[_F.sha256], set_={"fetches": _F.fetches + 1, "last_fetched_at": at}
                )
            )

    def get(self, sha256: str) -> VideoFetch | None:
        return self._rows.first(sa.select(video_fetches).where(_F.sha256 == sha256), _fetch)

    def of(self, sha256s: Collection[str]) -> dict[str, VideoFetch]:
        """The records of those of these videos that were fetched."""
        wanted = sorted(set(sha256s))
        found: dict[str, VideoFetch] = {}
        for start in range(0, len(wanted), _BATCH):
            query = sa.select(video_fetches).where(_F.sha256.in_(wanted[start : start + _BATCH]))
            found.update((fetch.sha256, fetch) for fetch in self._rows.all(query, _fetch))
        return found

    def recording_since(self) -> datetime | None:
        """When fetches began to be recorded (the migration that made their table was applied)."""
        query = sa.select(schema_version.c.applied_at).where(schema_version.c.version == RECORDING_VERSION)
        return as_utc(self._rows.value(query))

    def bases_among(self, execution_ids: Collection[str]) -> set[str]:
        """Those of these executions that a submitted execution names as its base: a variant may take any of their
        videos, its final one without naming it, and reads them from storage, not through their URLs."""
        wanted = sorted(set(execution_ids))
        found: set[str] = set()
        column = submissions.c.base_execution_id
        for start in range(0, len(wanted), _BATCH):
            query = sa.select(column).where(column.in_(wanted[start : start + _BATCH])).distinct()
            found.update(str(row[0]) for row in self._rows.tuples(query))
        return found


class FetchWindow:
    """Which requests for a video are a new fetch: not the same client's within `window_seconds` of the last one
    taken (thread-safe; remembers at most `max_entries` client and video pairs)."""

    def __init__(
        self,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        max_entries: int = DEFAULT_WINDOW_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._taken: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, sha256: str, client: str) -> bool:
        """True when this request is a new fetch to record (and remembers it), False within the window."""
        now = self._clock()
        key = (sha256, client)
        with self._lock:
            taken = self._taken.get(key)
            if taken is not None and now - taken < self.window_seconds:
                return False
            self._taken[key] = now
            self._taken.move_to_end(key)
            while len(self._taken) > self._max_entries:
                self._taken.popitem(last=False)
            return True

    def forget(self, sha256: str, client: str) -> None:
        """Take the next request of this client again (its fetch could not be recorded)."""
        with self._lock:
            self._taken.pop((sha256, client), None)
