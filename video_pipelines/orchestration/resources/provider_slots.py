"""Per-provider limits on Dagster's concurrency pools: one pool per provider, named as the provider.

Not `@op(pool=...)`: one op runs every node whatever its provider, and the slot must be held by the
provider job, which may run in a thread ahead of its step. So the node claims it itself
(`claim_concurrency_slot`, as Dagster's executors do). No limit set: nothing claimed. A resumed job
claims ahead of new ones. A dead run's slot is freed by run monitoring
(`run_monitoring.free_slots_after_run_end_seconds`). For that reason a job of a limited pool does not park.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.storage.tags import PRIORITY_TAG

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.providers.context import parking_refused
from video_pipelines.providers.http import sleep_interruptibly

# Dagster's pending-step priorities are signed 32-bit; a resumed job goes ahead of new ones of any run priority.
RESUME_PRIORITY_BOOST = 1_000_000
CLAIM_POLL_SECONDS = 0.5


def pool_limit(instance: dg.DagsterInstance, pool: str) -> int | None:
    """The limit of `pool` (initialized from `concurrency.pools.default_limit`), None: unlimited."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    limits = {limit.name: limit for limit in storage.get_pool_limits()}
    found = limits.get(pool)
    default = instance.global_op_concurrency_default_limit
    if default is not None and (found is None or (found.from_default and found.limit != default)):
        storage.initialize_concurrency_limit_to_default(pool)
        found = {limit.name: limit for limit in storage.get_pool_limits()}.get(pool)
    return None if found is None else found.limit


class DagsterProviderSlots:
    def __init__(
        self, instance: dg.DagsterInstance, run: dg.DagsterRun, *, step_key: str, log: Callable[[str], None]
    ) -> None:
        self._instance = instance
        self._run_id = run.run_id
        self._step_key = step_key
        self._priority = priority_of_tag(run.tags.get(PRIORITY_TAG))
        self._log = log

    @contextmanager
    def hold(self, provider: str, *, resuming: bool) -> Iterator[None]:
        pool = provider
        limit = pool_limit(self._instance, pool)
        if limit is None:
            yield
            return
        storage = self._instance.event_log_storage
        priority = self._priority + (RESUME_PRIORITY_BOOST if resuming else 0)
        waiting_since: float | None = None
        try:
            while not storage.claim_concurrency_slot(pool, self._run_id, self._step_key, priority).is_claimed:
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    self._log(f"waiting for a slot of pool '{pool}' (at most {limit} {provider} job(s) at once)")
                sleep_interruptibly(CLAIM_POLL_SECONDS)
            if waiting_since is not None:
                self._log(f"got a slot of pool '{pool}' after {time.monotonic() - waiting_since:.1f} s")
            # Dagster frees the slots of ended runs: a job of a limited pool waits in its run rather than park.
            with parking_refused():
                yield
        finally:
            storage.free_concurrency_slot_for_step(self._run_id, self._step_key)
