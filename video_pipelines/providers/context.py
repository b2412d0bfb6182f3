"""What the running node sets around its provider calls: the slots its jobs take, where error answers go, and
the circuits that may hold a call back (`submissions.breakers` keeps them in the database).

ContextVars join the HTTP stack and the op without threading parameters, keeping concurrent nodes apart.
A slot is released however the block ends, so a retried step queues again rather than hold it in backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class ProviderSlots(Protocol):
    """Where a node's provider jobs take their slots."""

    def hold(self, provider: str, *, resuming: bool) -> AbstractContextManager[None]:
        """A block during which one job of `provider` may exist; `resuming` jobs do not queue behind new ones."""


# (provider name, HTTP status) of one answer that was not 2xx.
ProviderErrorSink = Callable[[str, int], None]


@dataclass(frozen=True)
class Admission:
    """Whether a call may go to a provider now: `wait` > 0 while its circuit is open (ask again after that many
    seconds); `probe`: the one call a half-open circuit lets through, whose outcome closes or reopens it;
    `clean`: the circuit was closed with no failure counted, so a success has nothing to reset (no write)."""

    wait: float = 0.0
    probe: bool = False
    clean: bool = False

    @property
    def allowed(self) -> bool:
        return self.wait <= 0


class CircuitGate(Protocol):
    """The circuits of the providers, shared by the deployment; told the outcome of every call it admitted."""

    def admit(self, provider: str) -> Admission: ...

    def succeeded(self, provider: str) -> None: ...

    def failed(self, provider: str) -> None:
        """A transient failure (5xx, no answer): enough in a row open the circuit."""

    def is_open(self, provider: str) -> bool: ...


@dataclass(frozen=True)
class _Guard:
    gate: CircuitGate
    may_skip: bool


_slots: ContextVar[ProviderSlots | None] = ContextVar("video_pipelines_provider_slots", default=None)
_sink: ContextVar[ProviderErrorSink | None] = ContextVar("video_pipelines_provider_error_sink", default=None)
_parking: ContextVar[bool | None] = ContextVar("video_pipelines_parking", default=None)
_guard: ContextVar[_Guard | None] = ContextVar("video_pipelines_circuits", default=None)


@contextmanager
def scoped(variable: ContextVar[_T | None], value: _T) -> Iterator[None]:
    """`variable` set to `value` in this context until the block ends."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def limiting_provider_jobs(slots: ProviderSlots) -> AbstractContextManager[None]:
    """Take the slots of the provider jobs started in this context, until the block ends, from `slots`."""
    return scoped(_slots, slots)


def reporting_provider_errors(sink: ProviderErrorSink) -> AbstractContextManager[None]:
    """Report the provider error answers seen in this context, until the block ends, to `sink`."""
    return scoped(_sink, sink)


def parking_allowed() -> AbstractContextManager[None]:
    """In this context a provider job still running after its first check parks its node (`http.Parked`)
    instead of holding the run: only where a continuation will collect it (a submitted execution)."""
    return scoped(_parking, True)


def may_park() -> bool:
    return bool(_parking.get())


def provider_slot(provider: str, *, resuming: bool) -> AbstractContextManager[None]:
    """Hold a slot of `provider` in the current context's `ProviderSlots` (none set: no limit)."""
    slots = _slots.get()
    return nullcontext() if slots is None else slots.hold(provider, resuming=resuming)


def report_provider_error(provider: str, status: int) -> None:
    """Tell the current context's sink (if any) that `provider` answered HTTP `status` (not 2xx)."""
    sink = _sink.get()
    if sink is not None:
        sink(provider, status)


def guarding_circuits(gate: CircuitGate, *, may_skip: bool) -> AbstractContextManager[None]:
    """In this context provider calls go through `gate`; an open circuit is skipped (`ProviderUnavailable`) when
    `may_skip` (the node has a fallback to move to), else waited for."""
    return scoped(_guard, _Guard(gate, may_skip))


def circuit_admission(provider: str) -> Admission:
    guard = _guard.get()
    return Admission() if guard is None else guard.gate.admit(provider)


def may_skip_open_circuit() -> bool:
    guard = _guard.get()
    return guard is not None and guard.may_skip


def waits_for_circuit(provider: str) -> bool:
    """Whether a call that used up its attempts waits for `provider`'s open circuit rather than fail: a node with
    no fallback never fails for an open circuit."""
    guard = _guard.get()
    return guard is not None and not guard.may_skip and guard.gate.is_open(provider)


def circuit_succeeded(provider: str) -> None:
    guard = _guard.get()
    if guard is not None:
        guard.gate.succeeded(provider)


def circuit_failed(provider: str) -> None:
    guard = _guard.get()
    if guard is not None:
        guard.gate.failed(provider)
