"""Circuit breakers per provider, shared by every worker of the deployment: one row per provider in the store.

    closed ──`failures` transient failures in a row──> open ──`open_seconds` later, one caller──> half_open
      ^                                                  ^                                          │
      └───────────────────── the probe succeeds ─────────┴────────── the probe fails ───────────────┘

Each move is one conditional UPDATE (a failure: an upsert, then the moves it makes due, in one transaction), so
of racing workers exactly one takes the half-open probe. A probe whose caller died is taken over once its lease
(`probe_seconds`) ends. The state lives in the database, not in a process: pybreaker's and purgatory's state
machines run in the process (their shared storage is Redis, read and written around an in-process lock), let
every caller through a half-open circuit, and fail a call the circuit holds back; here a node with no fallback
waits for the circuit instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa

from video_pipelines.errors import UsageError
from video_pipelines.providers.context import Admission
from video_pipelines.submissions.rows import Rows, insert_into, moment, record
from video_pipelines.submissions.schema import provider_circuits
from video_pipelines.submissions.store import SubmissionStore

_C = provider_circuits.c

FAILURES_ENV = "VIDEO_PIPELINES_BREAKER_FAILURES"
OPEN_SECONDS_ENV = "VIDEO_PIPELINES_BREAKER_OPEN_SECONDS"
DEFAULT_FAILURES = 5
DEFAULT_OPEN_SECONDS = 60.0
# How often a caller held back by a half-open circuit (another caller's probe in flight) asks again.
PROBE_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class BreakerSettings:
    """When a circuit opens (`failures` transient failures in a row) and how long it stays open (seconds)."""

    failures: int = DEFAULT_FAILURES
    open_seconds: float = DEFAULT_OPEN_SECONDS

    @property
    def probe_seconds(self) -> float:
        # A probe is one HTTP call: its lease outlasts any request timeout, so only a dead caller loses it.
        return max(self.open_seconds, 120.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BreakerSettings:
        env = os.environ if environ is None else environ
        failures = _bounded(env, FAILURES_ENV, DEFAULT_FAILURES, int, "a whole number from 1 to 1000", (1, 1000))
        seconds = _bounded(
            env, OPEN_SECONDS_ENV, DEFAULT_OPEN_SECONDS, float, "seconds from 0.1 to 86400", (0.1, 86400)
        )
        return cls(failures=int(failures), open_seconds=float(seconds))


def _bounded(
    env: Mapping[str, str],
    variable: str,
    default: float,
    parse: Callable[[str], float],
    expected: str,
    bounds: tuple[float, float],
) -> float:
    """The variable's number (`default` when unset); UsageError naming it when unreadable or out of `bounds`."""
    text = env.get(variable, "").strip()
    if not text:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = bounds[0] - 1
    if not bounds[0] <= value <= bounds[1]:
        raise UsageError(f"{variable} must be {expected}; got {text!r}")
    return value


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # one probe call let through; the others still held back


@dataclass(frozen=True)
class Circuit:
    provider: str
    state: CircuitState
    failures: int
    opened_at: datetime | None
    probe_until: datetime | None
    updated_at: datetime


def _circuit(row: sa.RowMapping) -> Circuit:
    return record(Circuit, row, state=CircuitState(row["state"]))


class ProviderCircuits:
    """The providers' circuits on the store's engine (a `providers.context.CircuitGate`); processes share them.

    A database error never holds a call back nor fails it: it is reported to `warn` and the call goes through.
    """

    def __init__(
        self,
        store: SubmissionStore,
        settings: BreakerSettings | None = None,
        *,
        warn: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._rows = Rows(store.engine, store.reader)
        self._url = store.url
        self.settings = settings or BreakerSettings.from_env()
        self._warn = warn or (lambda _message: None)
        self._clock = clock or (lambda: moment(None))

    def get(self, provider: str) -> Circuit | None:
        return self._rows.first(sa.select(provider_circuits).where(_C.provider == provider), _circuit)

    def all(self) -> list[Circuit]:
        return self._rows.all(sa.select(provider_circuits).order_by(_C.provider), _circuit)

    def open_circuits(self) -> dict[str, CircuitState]:
        """The providers whose circuit is not closed, and its state."""
        return {circuit.provider: circuit.state for circuit in self.all() if circuit.state is not CircuitState.CLOSED}

    def admit(self, provider: str) -> Admission:
        try:
            return self._admit(provider, self._clock())
        except sa.exc.SQLAlchemyError as exc:
            self._warn(f"{provider}'s circuit could not be read in {self._url} ({_reason(exc)}); the call goes ahead")
            return Admission()

    def _admit(self, provider: str, now: datetime) -> Admission:
        circuit = self.get(provider)
        if circuit is None or circuit.state is CircuitState.CLOSED:
            # A success after a clean read writes nothing: one read per call, not a read and a write. A failure
            # counted by another worker between the read and the success is then reset by the next success that
            # read it (consecutive failures are counted in the order the store sees them, not the calls end).
            return Admission(clean=circuit is None or circuit.failures == 0)
        if circuit.state is CircuitState.OPEN:
            assert circuit.opened_at is not None  # the check constraint's states: opened_at is set when it opens
            reopens = circuit.opened_at + timedelta(seconds=self.settings.open_seconds)
            if now < reopens:
                return Admission(wait=(reopens - now).total_seconds())
            due = sa.and_(_C.state == CircuitState.OPEN.value, _C.opened_at <= now - self._open_for)
        else:
            if circuit.probe_until is not None and now < circuit.probe_until:
                return Admission(wait=min(PROBE_POLL_SECONDS, (circuit.probe_until - now).total_seconds()))
            due = sa.and_(_C.state == CircuitState.HALF_OPEN.value, _C.probe_until <= now)  # its prober is gone
        claim = provider_circuits.update().where(_C.provider == provider, due)
        values = {"state": CircuitState.HALF_OPEN.value, "probe_until": now + self._probe_for, "updated_at": now}
        if self._rows.changed(claim.values(values)) == 1:
            return Admission(probe=True)
        return Admission(wait=PROBE_POLL_SECONDS)  # another caller took the probe first

    def is_open(self, provider: str) -> bool:
        try:
            circuit = self.get(provider)
        except sa.exc.SQLAlchemyError as exc:
            self._warn(f"{provider}'s circuit could not be read in {self._url} ({_reason(exc)})")
            return False
        return circuit is not None and circuit.state is not CircuitState.CLOSED

    def succeeded(self, provider: str) -> None:
        now = self._clock()
        closed = {"state": CircuitState.CLOSED.value, "failures": 0, "opened_at": None, "probe_until": None}
        changed = sa.or_(_C.state != CircuitState.CLOSED.value, _C.failures != 0)
        statement = provider_circuits.update().where(_C.provider == provider, changed).values(**closed, updated_at=now)
        try:
            self._rows.changed(statement)
        except sa.exc.SQLAlchemyError as exc:
            self._warn(f"{provider}'s success is not recorded in its circuit ({_reason(exc)})")

    def failed(self, provider: str) -> None:
        now = self._clock()
        first = {"provider": provider, "state": CircuitState.CLOSED.value, "failures": 1, "updated_at": now}
        opened = {"state": CircuitState.OPEN.value, "opened_at": now, "probe_until": None, "updated_at": now}
        this = _C.provider == provider
        try:
            with self._rows.engine.begin() as connection:
                insert = insert_into(provider_circuits, connection.dialect.name).values(first)
                connection.execute(
                    insert.on_conflict_do_update(
                        index_elements=[_C.provider], set_={"failures": _C.failures + 1, "updated_at": now}
                    )
                )
                # The probe failed: open again, for another `open_seconds`.
                connection.execute(
                    provider_circuits.update().where(this, _C.state == CircuitState.HALF_OPEN.value).values(opened)
                )
                due = sa.and_(_C.state == CircuitState.CLOSED.value, _C.failures >= self.settings.failures)
                connection.execute(provider_circuits.update().where(this, due).values(opened))
        except sa.exc.SQLAlchemyError as exc:
            self._warn(f"{provider}'s failure is not recorded in its circuit ({_reason(exc)})")

    @property
    def _open_for(self) -> timedelta:
        return timedelta(seconds=self.settings.open_seconds)

    @property
    def _probe_for(self) -> timedelta:
        return timedelta(seconds=self.settings.probe_seconds)


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc)
