"""Per-provider limits: the slot a remote job holds from its creation to its end.

The HTTP stack (`http.run_job`) knows when a provider job begins and ends, but not where a
deployment keeps its limits; the Dagster shell knows the deployment's pools
(`orchestration/resources/provider_slots.py`) but not the adapters' calls. A `contextvars.ContextVar`
joins them, as for provider errors: the op sets the node's `ProviderSlots` around its work
(`limiting_provider_jobs`), and `run_job` holds a slot of its provider for as long as the job
exists (`provider_slot`). Outside a node (a test, the CLI) nothing is limited.

A holder waits for its slot without limit; whoever implements `hold` makes the wait
interruptible (`http.sleep_interruptibly`) and says that it waits. The slot is released when
the block ends, however it ends: with a transient error too, so a retried step queues again
instead of holding a slot through its backoff (another node of the same run may need it first).

No import beyond the standard library: the HTTP stack imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Protocol


class ProviderSlots(Protocol):
    """Where a node's provider jobs take their slots."""

    def hold(self, provider: str, *, resuming: bool) -> AbstractContextManager[None]:
        """A block during which one job of `provider` may exist; waits for a free slot first.

        `resuming`: the job already exists at the provider (a retried step), so it should not
        queue behind jobs that do not exist yet.
        """


_slots: ContextVar[ProviderSlots | None] = ContextVar("video_pipelines_provider_slots", default=None)


@contextmanager
def limiting_provider_jobs(slots: ProviderSlots) -> Iterator[None]:
    """Take the slots of the provider jobs started in this context, until the block ends, from `slots`."""
    token = _slots.set(slots)
    try:
        yield
    finally:
        _slots.reset(token)


@contextmanager
def provider_slot(provider: str, *, resuming: bool) -> Iterator[None]:
    """Hold a slot of `provider` in the current context's `ProviderSlots` (none set: no limit)."""
    slots = _slots.get()
    if slots is None:
        yield
        return
    with slots.hold(provider, resuming=resuming):
        yield
