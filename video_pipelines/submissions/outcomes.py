"""Execution outcomes: when each execution first started and how it first ended, each claimed once by one
conditional UPDATE or INSERT, so of racing observers exactly one counts it. The row also keeps the
caller's span id, so the execution's span, recorded in another process, is its child.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from video_pipelines.submissions.rows import Rows
from video_pipelines.submissions.schema import execution_outcomes, submissions
from video_pipelines.submissions.store import SubmissionState, SubmissionStore

_T = execution_outcomes.c
_S = submissions.c
# Submissions that end without a run: refused by the plan sensor, or canceled while pending.
_ENDED_WITHOUT_RUN = (SubmissionState.REJECTED.value, SubmissionState.CANCELED.value)


@dataclass(frozen=True)
class Claimed:
    """Whether an execution's start and end are claimed already."""

    started: bool
    ended: bool


@dataclass(frozen=True)
class OutcomeTally:
    """How many executions started, and how many first ended with each status."""

    started: int
    finished: dict[str, int]


class ExecutionOutcomes:
    """Each execution's first start and end, and its caller's span; thread-safe, processes may share it."""

    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def note_caller(self, execution_id: str, parent_span_id: str) -> None:
        """Keep the caller's span id (16 hex digits) for the execution's span; a span id kept already stays."""
        self._set_once(execution_id, _T.parent_span_id, {"parent_span_id": parent_span_id})

    def parent_span_id(self, execution_id: str) -> str | None:
        value = self._rows.value(sa.select(_T.parent_span_id).where(_T.execution_id == execution_id))
        return str(value) if value is not None else None

    def claimed(self, execution_id: str) -> Claimed:
        """Whether the execution's start and end are claimed, in one primary-key read."""
        query = sa.select(_T.started_at, _T.status).where(_T.execution_id == execution_id)
        found = self._rows.first(query, lambda row: Claimed(row["started_at"] is not None, row["status"] is not None))
        return found or Claimed(started=False, ended=False)

    def unclaimed_ends_without_run(self, since: datetime, limit: int) -> list[str]:
        """Executions whose submission was rejected or canceled before it ran since `since`, with no end claimed."""
        query = (
            sa.select(_S.execution_id)
            .outerjoin(execution_outcomes, _T.execution_id == _S.execution_id)
            .where(_S.state.in_(_ENDED_WITHOUT_RUN), _S.updated_at >= since, _T.status.is_(None))
            .order_by(_S.updated_at)
            .limit(limit)
        )
        return [str(execution_id) for (execution_id,) in self._rows.tuples(query)]

    def claim_start(self, execution_id: str, started_at: datetime) -> bool:
        """Record that the execution started; True for the one caller that recorded it."""
        return self._set_once(execution_id, _T.started_at, {"started_at": started_at})

    def claim_end(self, execution_id: str, status: str, ended_at: datetime) -> bool:
        """Record how the execution ended; True for the one caller that recorded it, False when it was before."""
        return self._set_once(execution_id, _T.status, {"status": status, "ended_at": ended_at})

    def _set_once(self, execution_id: str, column: sa.Column[Any], values: dict[str, Any]) -> bool:
        """Set `values` where `column` is still NULL, making the row if there is none; True when this call set them."""
        unset = execution_outcomes.update().where(_T.execution_id == execution_id, column.is_(None)).values(values)
        if self._rows.changed(unset) == 1:
            return True
        try:
            with self._rows.engine.begin() as connection:
                connection.execute(execution_outcomes.insert().values(execution_id=execution_id, **values))
        except sa.exc.IntegrityError:
            # Another process made the row meanwhile: with `column` set (then it won) or not (then this one may).
            return self._rows.changed(unset) == 1
        return True

    def tally(self) -> OutcomeTally:
        """How many executions started and how many ended by status, in one pass over the table."""
        query = sa.select(_T.status, sa.func.count(), sa.func.count(_T.started_at)).group_by(_T.status)
        rows = self._rows.tuples(query)
        return OutcomeTally(
            started=sum(int(started) for _status, _count, started in rows),
            finished={str(status): int(count) for status, count, _started in rows if status is not None},
        )
