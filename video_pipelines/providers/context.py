"""What the running node sets around its provider calls: the slots its jobs take, and where error answers go.

ContextVars join the HTTP stack and the op without threading parameters, keeping concurrent nodes apart.
A slot is released however the block ends, so a retried step queues again rather than hold it in backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class ProviderSlots(Protocol):
    """Where a node's provider jobs take their slots."""

    def hold(self, provider: str, *, resuming: bool) -> AbstractContextManager[None]:
        """A block during which one job of `provider` may exist; `resuming` jobs do not queue behind new ones."""


# (provider name, HTTP status) of one answer that was not 2xx.
ProviderErrorSink = Callable[[str, int], None]

_slots: ContextVar[ProviderSlots | None] = ContextVar("video_pipelines_provider_slots", default=None)
_sink: ContextVar[ProviderErrorSink | None] = ContextVar("video_pipelines_provider_error_sink", default=None)
_parking: ContextVar[bool | None] = ContextVar("video_pipelines_parking", default=None)


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


def parking_refused() -> AbstractContextManager[None]:
    """In this context no job parks: it holds a slot of a provider pool, which a parked job could not keep."""
    return scoped(_parking, False)


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
