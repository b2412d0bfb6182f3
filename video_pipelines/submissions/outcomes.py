"""Execution outcomes: how each execution first ended, claimed once, and the caller's span it is a child of.

An execution's end is seen by more than one process: the run-status sensors when its last
run ends (possibly twice, after a daemon restart, or by two daemons), the plan sensor when it
rejects a submission, `cancel` when it stops a pending one. Whatever the end triggers once
(the execution counted in `executions_finished_total`, its span exported) is done by the
observer that *claims* the end: one conditional UPDATE (`status IS NULL`) or the INSERT of
the row, so of two observers racing exactly one wins, on PostgreSQL as on SQLite.

Only the first end is claimed: an execution a user retries after it failed ends again, and
that end is one of its attempts (see `telemetry.metrics`), not a second end of the execution.

The row is also where the submission leaves the span id of the caller's span (the request's
W3C `traceparent`), so the execution's span, recorded when it ends in another process, is a
child of the caller's span.

The table (`video_pipelines_execution_outcomes`, see `schema`, step 6) is in the submission
store's database and uses its engine.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from video_pipelines.submissions.schema import execution_outcomes
from video_pipelines.submissions.store import SubmissionStore

_T = execution_outcomes.c


class ExecutionOutcomes:
    """Each execution's first end and its caller's span (see the module docstring). Thread- and process-safe."""

    def __init__(self, store: SubmissionStore) -> None:
        self._engine, self._reader = store.engine, store.reader

    def note_caller(self, execution_id: str, parent_span_id: str) -> None:
        """Keep the caller's span id (16 hex digits) for the execution's span; a span id kept already stays."""
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    execution_outcomes.insert().values(execution_id=execution_id, parent_span_id=parent_span_id)
                )
        except sa.exc.IntegrityError:
            keep = _T.execution_id == execution_id, _T.parent_span_id.is_(None)
            with self._engine.begin() as connection:
                connection.execute(execution_outcomes.update().where(*keep).values(parent_span_id=parent_span_id))

    def parent_span_id(self, execution_id: str) -> str | None:
        """The caller's span id kept for the execution, or None."""
        query = sa.select(_T.parent_span_id).where(_T.execution_id == execution_id)
        with self._reader.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None

    def claim_end(self, execution_id: str, status: str, ended_at: datetime) -> bool:
        """Record the execution's end; True for the one caller that recorded it, False when it was recorded before."""
        if self._claim_row(execution_id, status, ended_at):
            return True
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    execution_outcomes.insert().values(execution_id=execution_id, status=status, ended_at=ended_at)
                )
        except sa.exc.IntegrityError:
            # Another process made the row meanwhile: its end (then ours loses) or its caller's span (then ours wins).
            return self._claim_row(execution_id, status, ended_at)
        return True

    def _claim_row(self, execution_id: str, status: str, ended_at: datetime) -> bool:
        unclaimed = _T.execution_id == execution_id, _T.status.is_(None)
        with self._engine.begin() as connection:
            updated = connection.execute(
                execution_outcomes.update().where(*unclaimed).values(status=status, ended_at=ended_at)
            )
        return updated.rowcount == 1

    def count_by_status(self) -> dict[str, int]:
        """How many executions first ended with each status."""
        query = sa.select(_T.status, sa.func.count()).where(_T.status.is_not(None)).group_by(_T.status)
        with self._reader.connect() as connection:
            return {str(status): int(count) for status, count in connection.execute(query).all()}


__all__ = ["ExecutionOutcomes"]
