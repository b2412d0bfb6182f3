"""Per-provider limits on Dagster's concurrency pools: one pool per provider, named as the provider.

Not `@op(pool=...)`: one op runs every node whatever its provider, and the slot must be held by the
provider job, which may run in a thread ahead of its step. So the node claims it itself
(`claim_concurrency_slot`, as Dagster's executors do). No limit set: nothing claimed. A resumed job
claims ahead of new ones. A dead run's slot is freed by run monitoring
(`run_monitoring.free_slots_after_run_end_seconds`).

A parked job holds no run, so no Dagster slot either: the pool's limit counts jobs in flight, the slots held by
runs plus the parked jobs still running at the provider (`ProviderWaits.running`). A new job whose slot would
overfill that gives the slot back and waits; a resumed or continued job (its job exists) is never held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.storage.tags import PRIORITY_TAG

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.providers.http import sleep_interruptibly
from video_pipelines.submissions import ProviderWaits, SubmissionStore

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
            while not self._claim(pool, limit, priority, resuming=resuming):
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    self._log(f"waiting for a slot of pool '{pool}' (at most {limit} {provider} job(s) at once)")
                sleep_interruptibly(CLAIM_POLL_SECONDS)
            if waiting_since is not None:
                self._log(f"got a slot of pool '{pool}' after {time.monotonic() - waiting_since:.1f} s")
            yield
        finally:
            storage.free_concurrency_slot_for_step(self._run_id, self._step_key)

    def _claim(self, pool: str, limit: int, priority: int, *, resuming: bool) -> bool:
        storage = self._instance.event_log_storage
        if not storage.claim_concurrency_slot(pool, self._run_id, self._step_key, priority).is_claimed:
            return False
        if resuming:
            return True
        parked = ProviderWaits(SubmissionStore.shared()).running(pool)
        if parked == 0 or storage.get_concurrency_info(pool).active_slot_count + parked <= limit:
            return True
        storage.free_concurrency_slot_for_step(self._run_id, self._step_key)  # parked jobs fill the pool
        return False
