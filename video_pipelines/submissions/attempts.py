"""Attempts: the runs of an execution after its first one (attempt 1 has no row), resumed or retried.

    pending ──claim──> launching ──mark_launched──> launched
       └─────cancel_pending──> canceled

Each move is one conditional UPDATE and `request` is idempotent by the primary key, so of racers one
wins; once claimed, a cancel is a request the run obeys.

Execution outcomes: when each execution first started and how it first ended, each claimed once by one
conditional UPDATE or INSERT, so of racing observers exactly one counts it. The row also keeps the
caller's span id, so the execution's span, recorded in another process, is its child.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.submissions.rows import Rows, moment, record
from video_pipelines.submissions.schema import execution_attempts, execution_outcomes, submissions
from video_pipelines.submissions.store import SubmissionState, SubmissionStore

# Attempt 1 is the execution's first run, which is not stored here.
_FIRST_STORED_ATTEMPT: Final = 2
_MAX_EXECUTION_ID_LENGTH: Final = 64

_T = execution_attempts.c
_O = execution_outcomes.c
_S = submissions.c


class AttemptReason(StrEnum):
    """Why an execution runs again."""

    RESUME = "resume"  # automatically: the previous run's worker died
    RETRY = "retry"  # on a user's request: the previous run failed or was canceled
    CONTINUE = "continue"  # a provider job the previous run parked on ended: collect it and go on


class AttemptState(StrEnum):
    PENDING = "pending"
    LAUNCHING = "launching"  # claimed by the plan sensor, which asked for its run; the run may not exist yet
    LAUNCHED = "launched"
    CANCELED = "canceled"


@dataclass(frozen=True)
class RunAttempt:
    """One run of an execution after its first one, and where its launch stands."""

    execution_id: str
    number: int  # 2, 3, ...: attempt 1 is the execution's first run
    reason: AttemptReason
    previous_run_id: str  # the Dagster run this attempt follows
    requested_at: datetime
    state: AttemptState = AttemptState.PENDING
    run_id: str | None = None  # this attempt's Dagster run, once launched
    launched_at: datetime | None = None
    cancel_requested_at: datetime | None = None  # see the column in schema.py

    @property
    def is_pending(self) -> bool:
        """Not launched yet: its run is still to be asked for, or asked for and not seen yet."""
        return self.state in (AttemptState.PENDING, AttemptState.LAUNCHING)


_PENDING: Final = AttemptState.PENDING.value
_NOT_LAUNCHED: Final = (_PENDING, AttemptState.LAUNCHING.value)
_CLAIMED: Final = (AttemptState.LAUNCHING.value, AttemptState.LAUNCHED.value)


def _attempt(row: sa.RowMapping) -> RunAttempt:
    return record(RunAttempt, row, reason=AttemptReason(row["reason"]), state=AttemptState(row["state"]))


def _check_request(execution_id: str, number: int, reason: str, previous_run_id: str) -> AttemptReason:
    if not execution_id or len(execution_id) > _MAX_EXECUTION_ID_LENGTH:
        raise SubmissionStoreError(f"an attempt needs its execution id (1 to {_MAX_EXECUTION_ID_LENGTH} characters)")
    if number < _FIRST_STORED_ATTEMPT:
        raise SubmissionStoreError(
            f"attempt {number!r} of {execution_id}: attempts after the first run are numbered from "
            f"{_FIRST_STORED_ATTEMPT} (attempt 1 is the execution's first run)"
        )
    if not previous_run_id:
        raise SubmissionStoreError(f"attempt {number} of {execution_id} needs the run id of the run it follows")
    try:
        return AttemptReason(reason)
    except ValueError:
        raise SubmissionStoreError(
            f"attempt {number} of {execution_id}: reason must be one of "
            f"{', '.join(reason.value for reason in AttemptReason)}; got {reason!r}"
        ) from None


class AttemptStore:
    """An execution's attempts after its first run, on the store's engine; thread-safe, processes may share it."""

    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def request(
        self,
        execution_id: str,
        number: int,
        reason: AttemptReason,
        previous_run_id: str,
        *,
        now: datetime | None = None,
    ) -> tuple[RunAttempt, bool]:
        """Record attempt `number` (>= 2) as PENDING: (attempt, True); an existing one as it stands: (it, False)."""
        checked = _check_request(execution_id, number, reason, previous_run_id)
        attempt = RunAttempt(execution_id, number, checked, previous_run_id, moment(now))
        row = {**vars(attempt), "reason": checked.value, "state": attempt.state.value}
        insert = execution_attempts.insert().values(row)
        return self._rows.insert_once(attempt, insert, lambda: self.get(execution_id, number))

    def get(self, execution_id: str, number: int) -> RunAttempt | None:
        query = sa.select(execution_attempts).where(_T.execution_id == execution_id, _T.number == number)
        return self._rows.first(query, _attempt)

    def of_execution(self, execution_id: str) -> list[RunAttempt]:
        query = sa.select(execution_attempts).where(_T.execution_id == execution_id).order_by(_T.number)
        return self._rows.all(query, _attempt)

    def pending(self, limit: int = 100) -> list[RunAttempt]:
        """Up to `limit` attempts not launched yet, oldest first."""
        query = sa.select(execution_attempts).where(_T.state.in_(_NOT_LAUNCHED))
        order = (_T.requested_at, _T.execution_id, _T.number)
        return self._rows.all(query.order_by(*order).limit(limit), _attempt) if limit > 0 else []

    def claim(self, execution_id: str, number: int) -> bool:
        """PENDING -> LAUNCHING, before its run is asked for; False (and no change) if it was not pending."""
        return self._move(execution_id, number, (_PENDING,), state=AttemptState.LAUNCHING.value)

    def mark_launched(self, execution_id: str, number: int, run_id: str) -> bool:
        """PENDING or LAUNCHING -> LAUNCHED with its Dagster run id; False (and no change) otherwise."""
        if not run_id:
            raise SubmissionStoreError(f"attempt {number} of {execution_id} is launched as a run: give its run id")
        launched = {"state": AttemptState.LAUNCHED.value, "run_id": run_id, "launched_at": datetime.now(UTC)}
        return self._move(execution_id, number, _NOT_LAUNCHED, **launched)

    def record_outcome(self, execution_id: str, number: int, outcome: str) -> bool:
        """How attempt `number`'s run ended (completed, failed, canceled); True for the one caller that recorded it."""
        statement = execution_attempts.update().where(
            _T.execution_id == execution_id, _T.number == number, _T.outcome.is_(None)
        )
        return self._rows.changed(statement.values(outcome=outcome)) == 1

    def _move(self, execution_id: str, number: int, sources: tuple[str, ...], **values: Any) -> bool:
        where = sa.and_(_T.execution_id == execution_id, _T.number == number)
        return self._rows.move(execution_attempts, where, sources, **values) == 1

    def outcome(self, execution_id: str, number: int) -> str | None:
        """How attempt `number`'s run ended, once recorded; None before (or when there is no such attempt)."""
        value = self._rows.value(sa.select(_T.outcome).where(_T.execution_id == execution_id, _T.number == number))
        return str(value) if value is not None else None

    def outcome_counts(self) -> dict[tuple[str, str], int]:
        query = sa.select(_T.reason, _T.outcome, sa.func.count()).where(_T.outcome.is_not(None))
        rows = self._rows.tuples(query.group_by(_T.reason, _T.outcome))
        return {(str(reason), str(outcome)): int(count) for reason, outcome, count in rows}

    def cancel_pending(self, execution_id: str) -> bool:
        """Every PENDING attempt of an execution -> CANCELED; True when any was pending."""
        canceled = AttemptState.CANCELED.value
        return self._rows.move(execution_attempts, _T.execution_id == execution_id, (_PENDING,), state=canceled) > 0

    def request_cancel(self, execution_id: str, *, launched: bool = True) -> bool:
        """Record a cancel of every LAUNCHING (and with `launched`, LAUNCHED) attempt; True when there was any."""
        states = _CLAIMED if launched else (AttemptState.LAUNCHING.value,)
        requested = sa.func.coalesce(_T.cancel_requested_at, datetime.now(UTC))
        where = _T.execution_id == execution_id
        return self._rows.move(execution_attempts, where, states, cancel_requested_at=requested) > 0


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
        self._set_once(execution_id, _O.parent_span_id, {"parent_span_id": parent_span_id})

    def parent_span_id(self, execution_id: str) -> str | None:
        value = self._rows.value(sa.select(_O.parent_span_id).where(_O.execution_id == execution_id))
        return str(value) if value is not None else None

    def claimed(self, execution_id: str) -> Claimed:
        """Whether the execution's start and end are claimed, in one primary-key read."""
        query = sa.select(_O.started_at, _O.status).where(_O.execution_id == execution_id)
        found = self._rows.first(query, lambda row: Claimed(row["started_at"] is not None, row["status"] is not None))
        return found or Claimed(started=False, ended=False)

    def unclaimed_ends_without_run(self, since: datetime, limit: int) -> list[str]:
        """Executions whose submission was rejected or canceled before it ran since `since`, with no end claimed."""
        query = (
            sa.select(_S.execution_id)
            .outerjoin(execution_outcomes, _O.execution_id == _S.execution_id)
            .where(_S.state.in_(_ENDED_WITHOUT_RUN), _S.updated_at >= since, _O.status.is_(None))
            .order_by(_S.updated_at)
            .limit(limit)
        )
        return [str(execution_id) for (execution_id,) in self._rows.tuples(query)]

    def claim_start(self, execution_id: str, started_at: datetime) -> bool:
        """Record that the execution started; True for the one caller that recorded it."""
        return self._set_once(execution_id, _O.started_at, {"started_at": started_at})

    def claim_end(self, execution_id: str, status: str, ended_at: datetime) -> bool:
        """Record how the execution ended; True for the one caller that recorded it, False when it was before."""
        return self._set_once(execution_id, _O.status, {"status": status, "ended_at": ended_at})

    def _set_once(self, execution_id: str, column: sa.Column[Any], values: dict[str, Any]) -> bool:
        """Set `values` where `column` is still NULL, making the row if there is none; True when this call set them."""
        unset = execution_outcomes.update().where(_O.execution_id == execution_id, column.is_(None)).values(values)
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
        query = sa.select(_O.status, sa.func.count(), sa.func.count(_O.started_at)).group_by(_O.status)
        rows = self._rows.tuples(query)
        return OutcomeTally(
            started=sum(int(started) for _status, _count, started in rows),
            finished={str(status): int(count) for status, count, _started in rows if status is not None},
        )
