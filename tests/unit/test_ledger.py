"""A node's provider job kept in its run's tags (`nodes.ledger`): written again when the database drops the write."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from video_pipelines.errors import TransientStorageError
from video_pipelines.nodes import ledger
from video_pipelines.nodes.ledger import PROVIDER_JOB_TAG_PREFIX, RunTagLedger


@dataclass
class Run:
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RestartingDatabase:
    """Run tags on a database that drops the next `drops` writes; `committed`: whether a dropped write committed
    before its answer was lost (PostgreSQL restarting as it answered)."""

    drops: int
    committed: bool = False
    run: Run = field(default_factory=Run)
    writes: int = 0

    def get_run_by_id(self, run_id: str, /) -> Run:
        return self.run

    def add_run_tags(self, run_id: str, new_tags: Mapping[str, str], /) -> None:
        self.writes += 1
        if self.drops:
            self.drops -= 1
            if self.committed:
                self.run.tags.update(new_tags)
            raise sa.exc.OperationalError("UPDATE runs ...", {}, Exception("server closed the connection unexpectedly"))
        self.run.tags.update(new_tags)


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "DATABASE_GONE_PAUSES", (0.0,) * len(ledger.DATABASE_GONE_PAUSES))


@pytest.mark.parametrize("committed", [False, True], ids=["dropped", "committed, its answer lost"])
def test_a_job_id_is_remembered_through_a_database_restart(committed: bool) -> None:
    """CI: PostgreSQL restarted as a run recorded its new prediction; the run canceled the job it thought
    unrecorded, and its resume then found the tag of a canceled job."""
    database = RestartingDatabase(drops=3, committed=committed)
    RunTagLedger(database, "run-1", "gen", threading.Lock()).remember("p1")
    assert database.run.tags == {PROVIDER_JOB_TAG_PREFIX + "gen": "p1"} and database.writes == 4


def test_a_database_gone_for_longer_is_a_transient_failure_of_the_node() -> None:
    database = RestartingDatabase(drops=100)
    with pytest.raises(TransientStorageError, match="the database was unreachable"):
        RunTagLedger(database, "run-1", "gen", threading.Lock()).remember("p1")
    assert database.writes == len(ledger.DATABASE_GONE_PAUSES) + 1
