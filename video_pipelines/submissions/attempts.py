"""Attempts: the runs of an execution after its first one.

An execution's attempt 1 is its first Dagster run; it has no row here. Attempt 2, 3, ...
is a new run of the same execution, requested after the previous run:

- `resume`: requested automatically, after the previous run's worker died;
- `retry`: requested by a user, after the previous run failed or was canceled.

An attempt is PENDING until the plan sensor claims it and asks for its run (LAUNCHING), then
sees its run (LAUNCHED, with the run id); or it is canceled first (CANCELED):

    pending ──claim──> launching ──mark_launched──> launched
       └─────cancel_pending──> canceled

Once its run ended, a launched attempt gets that run's `outcome` (`record_outcome`, once), for the metrics.

Guarantees, as for submissions (`store`):
- `request` is idempotent per (execution, number): the table's primary key decides, also
  when processes race, so two requests for the same attempt make one.
- Each move is one conditional UPDATE: of two sensors (or a sensor and a cancel) racing on
  one attempt, exactly one wins. A cancel wins only against PENDING; once the attempt is
  claimed, it is a request (`request_cancel`) that the attempt's run obeys.

The table (`video_pipelines_attempts`, see `schema`, steps 4 and 6) is in the submission store's
database and uses its engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.submissions.schema import execution_attempts
from video_pipelines.submissions.store import SubmissionStore
from video_pipelines.submissions.timestamps import as_utc, moment, required_utc

# Attempt 1 is the execution's first run, which is not stored here.
_FIRST_STORED_ATTEMPT: Final = 2
_MAX_EXECUTION_ID_LENGTH: Final = 64

_T = execution_attempts.c


class AttemptReason(StrEnum):
    """Why an execution runs again."""

    RESUME = "resume"  # automatically: the previous run's worker died
    RETRY = "retry"  # on a user's request: the previous run failed or was canceled


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
    state: AttemptState
    run_id: str | None  # this attempt's Dagster run, once launched
    requested_at: datetime
    launched_at: datetime | None
    # When a cancel came after the plan sensor claimed it: its run, once it exists, runs no node.
    cancel_requested_at: datetime | None = None

    @property
    def is_pending(self) -> bool:
        """Not launched yet: its run is still to be asked for, or asked for and not seen yet."""
        return self.state in (AttemptState.PENDING, AttemptState.LAUNCHING)


_NOT_LAUNCHED: Final = (AttemptState.PENDING.value, AttemptState.LAUNCHING.value)
_CLAIMED: Final = (AttemptState.LAUNCHING.value, AttemptState.LAUNCHED.value)


def _moment(now: datetime | None) -> datetime:
    return moment(now, SubmissionStoreError)


def _attempt(row: sa.RowMapping) -> RunAttempt:
    return RunAttempt(
        execution_id=row["execution_id"],
        number=row["number"],
        reason=AttemptReason(row["reason"]),
        previous_run_id=row["previous_run_id"],
        state=AttemptState(row["state"]),
        run_id=row["run_id"],
        requested_at=required_utc(row["requested_at"]),
        launched_at=as_utc(row["launched_at"]),
        cancel_requested_at=as_utc(row["cancel_requested_at"]),
    )


def _row(attempt: RunAttempt) -> dict[str, Any]:
    return {**vars(attempt), "reason": attempt.reason.value, "state": attempt.state.value}


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
    """An execution's attempts after its first run, in the submission store's database (see the module docstring).

    Uses the store's engine (the store owns and closes it). Thread-safe; several processes may share a database.
    """

    def __init__(self, store: SubmissionStore) -> None:
        self._engine, self._reader = store.engine, store.reader

    def request(
        self,
        execution_id: str,
        number: int,
        reason: AttemptReason,
        previous_run_id: str,
        *,
        now: datetime | None = None,
    ) -> tuple[RunAttempt, bool]:
        """Record attempt `number` (>= 2) of an execution as PENDING: (attempt, True).

        When that attempt is already recorded, nothing changes and it is returned as it
        stands: (existing, False), whatever the other arguments, also when processes race.
        """
        checked = _check_request(execution_id, number, reason, previous_run_id)
        existing = self.get(execution_id, number)
        if existing is not None:
            return existing, False
        attempt = RunAttempt(
            execution_id=execution_id,
            number=number,
            reason=checked,
            previous_run_id=previous_run_id,
            state=AttemptState.PENDING,
            run_id=None,
            requested_at=_moment(now),
            launched_at=None,
        )
        try:
            with self._engine.begin() as connection:
                connection.execute(execution_attempts.insert().values(_row(attempt)))
        except sa.exc.IntegrityError:
            # Another process recorded this attempt between our read and our insert.
            existing = self.get(execution_id, number)
            if existing is None:
                raise
            return existing, False
        return attempt, True

    def get(self, execution_id: str, number: int) -> RunAttempt | None:
        """Attempt `number` of an execution, or None when it was never requested."""
        query = sa.select(execution_attempts).where(_T.execution_id == execution_id, _T.number == number)
        with self._reader.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _attempt(row) if row is not None else None

    def of_execution(self, execution_id: str) -> list[RunAttempt]:
        """Every requested attempt of an execution, by number."""
        query = sa.select(execution_attempts).where(_T.execution_id == execution_id).order_by(_T.number)
        with self._reader.connect() as connection:
            return [_attempt(row) for row in connection.execute(query).mappings()]

    def pending(self, limit: int = 100) -> list[RunAttempt]:
        """Up to `limit` attempts not launched yet (PENDING or LAUNCHING), of every execution: the oldest
        requested first."""
        if limit <= 0:
            return []
        query = (
            sa.select(execution_attempts)
            .where(_T.state.in_(_NOT_LAUNCHED))
            .order_by(_T.requested_at, _T.execution_id, _T.number)
            .limit(limit)
        )
        with self._reader.connect() as connection:
            return [_attempt(row) for row in connection.execute(query).mappings()]

    def claim(self, execution_id: str, number: int) -> bool:
        """PENDING -> LAUNCHING, before its run is asked for; False (and no change) if it was not pending."""
        return self._move(execution_id, number, (AttemptState.PENDING.value,), state=AttemptState.LAUNCHING.value)

    def mark_launched(self, execution_id: str, number: int, run_id: str) -> bool:
        """PENDING or LAUNCHING -> LAUNCHED with its Dagster run id; False (and no change) otherwise."""
        if not run_id:
            raise SubmissionStoreError(f"attempt {number} of {execution_id} is launched as a run: give its run id")
        return self._move(
            execution_id,
            number,
            _NOT_LAUNCHED,
            state=AttemptState.LAUNCHED.value,
            run_id=run_id,
            launched_at=datetime.now(UTC),
        )

    def _move(self, execution_id: str, number: int, sources: tuple[str, ...], **values: Any) -> bool:
        # One conditional UPDATE: of several racing callers, exactly one finds the row still in a source state.
        statement = (
            execution_attempts.update()
            .where(_T.execution_id == execution_id, _T.number == number, _T.state.in_(sources))
            .values(**values)
        )
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def record_outcome(self, execution_id: str, number: int, outcome: str) -> bool:
        """How attempt `number`'s run ended (completed, failed, canceled); True for the one caller that recorded it."""
        statement = (
            execution_attempts.update()
            .where(_T.execution_id == execution_id, _T.number == number, _T.outcome.is_(None))
            .values(outcome=outcome)
        )
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def outcome(self, execution_id: str, number: int) -> str | None:
        """How attempt `number`'s run ended, once recorded; None before (or when there is no such attempt)."""
        query = sa.select(_T.outcome).where(_T.execution_id == execution_id, _T.number == number)
        with self._reader.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None

    def outcome_counts(self) -> dict[tuple[str, str], int]:
        """How many attempts' runs ended, by (reason, outcome)."""
        query = (
            sa.select(_T.reason, _T.outcome, sa.func.count())
            .where(_T.outcome.is_not(None))
            .group_by(_T.reason, _T.outcome)
        )
        with self._reader.connect() as connection:
            return {
                (str(reason), str(outcome)): int(count) for reason, outcome, count in connection.execute(query).all()
            }

    def cancel_pending(self, execution_id: str) -> bool:
        """Every PENDING attempt of an execution -> CANCELED; True when any was pending."""
        statement = (
            execution_attempts.update()
            .where(_T.execution_id == execution_id, _T.state == AttemptState.PENDING.value)
            .values(state=AttemptState.CANCELED.value)
        )
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def request_cancel(self, execution_id: str, *, launched: bool = True) -> bool:
        """Record a cancel of every LAUNCHING or LAUNCHED attempt of an execution (their runs obey it); True
        when there was any. A second request keeps the first one's time. `launched=False` leaves LAUNCHED
        ones alone: their runs finished, a request would outlive them."""
        states = _CLAIMED if launched else (AttemptState.LAUNCHING.value,)
        statement = (
            execution_attempts.update()
            .where(_T.execution_id == execution_id, _T.state.in_(states))
            .values(cancel_requested_at=sa.func.coalesce(_T.cancel_requested_at, datetime.now(UTC)))
        )
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount > 0
