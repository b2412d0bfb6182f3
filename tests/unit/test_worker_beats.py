"""The run workers' beats: the staleness rule, and the rows one per worker that `/api/workers` lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.worker_beats import (
    BEAT_SECONDS,
    BEAT_STALE_SECONDS,
    PRUNE_SECONDS,
    WorkerBeat,
    WorkerBeats,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def beat(name: str, seconds_ago: float, tasks: tuple[str, ...] = (), concurrency: int = 2) -> WorkerBeat:
    return WorkerBeat(name, ("dagster",), concurrency, tasks, NOW - timedelta(seconds=seconds_ago))


def test_a_worker_is_gone_after_a_few_missed_beats_not_one() -> None:
    assert BEAT_STALE_SECONDS >= 3 * BEAT_SECONDS  # a GC pause or a slow database costs a beat, not the worker
    assert beat("w", 0).fresh(NOW) and beat("w", BEAT_SECONDS * 2).fresh(NOW)
    assert beat("w", BEAT_STALE_SECONDS - 0.001).fresh(NOW)
    assert not beat("w", BEAT_STALE_SECONDS).fresh(NOW) and not beat("w", 3600).fresh(NOW)
    # A beat from a clock slightly ahead is fresh, not an error.
    assert beat("w", -1).fresh(NOW)
    assert beat("w", 0, tasks=("t1", "t2")).active == 2 and beat("w", 0).active == 0


def test_a_worker_is_idle_while_a_child_is_free_and_no_task_waits_for_one() -> None:
    assert beat("w", 0).idle and beat("w", 0, tasks=("t1",)).idle
    assert not beat("w", 0, tasks=("t1", "t2")).idle
    waiting = WorkerBeat("w", ("dagster",), 2, ("t1",), NOW, waiting=("t2",))
    assert not waiting.idle  # received, held for the busy child: the next task would wait too


def test_beats_replace_the_row_list_the_live_workers_and_a_stopped_one_is_removed(store: SubmissionStore) -> None:
    beats = WorkerBeats(store, clock=lambda: NOW)
    assert beats.alive() == [] and beats.get("w1@host") is None
    beats.record(beat("w2@host", 1))
    beats.record(beat("w1@host", 5))
    held = WorkerBeat("w1@host", ("dagster",), 2, ("task-a",), NOW, waiting=("task-b",))
    beats.record(held)  # the next beat replaces the row: one per worker
    assert beats.alive() == [held, beat("w2@host", 1)]
    assert [worker.active for worker in beats.alive()] == [1, 0]

    # w2 stops beating (SIGKILL): listed while its last beat is fresh, gone once it is stale; its row is kept.
    assert [worker.name for worker in beats.alive(NOW + timedelta(seconds=BEAT_STALE_SECONDS - 2))] == [
        "w1@host",
        "w2@host",
    ]
    assert beats.alive(NOW + timedelta(seconds=BEAT_STALE_SECONDS)) == []
    assert beats.get("w2@host") == beat("w2@host", 1)

    # w1 stops cleanly: gone at once.
    beats.remove("w1@host")
    assert [worker.name for worker in beats.alive()] == ["w2@host"] and beats.get("w1@host") is None


def test_a_beat_deletes_the_rows_of_workers_unseen_for_a_day(store: SubmissionStore) -> None:
    beats = WorkerBeats(store, clock=lambda: NOW)
    beats.record(beat("old@host", PRUNE_SECONDS + 60))
    beats.record(beat("recent@host", PRUNE_SECONDS - 60))
    beats.record(beat("live@host", 0))
    assert beats.get("old@host") is None and beats.get("recent@host") is not None
