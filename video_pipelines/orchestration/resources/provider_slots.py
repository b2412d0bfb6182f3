"""Per-provider limits on Dagster's concurrency pools: one pool per provider, named as the provider.

Why Dagster's pools, and why not through `@op(pool=...)`: a pool is the deployment-wide
limit Dagster already keeps in its database (every run, every worker, every machine sees
the same slots), is set in one place (`dagster instance concurrency set replicate 4`, or
the UI's Deployment → Concurrency) and shows who holds and who waits. But an op's pool
belongs to its definition, and one op (`run_plan_node`) runs every node whatever its
provider, so the pool cannot vary per node; and a slot must be held by the provider job
(from its creation to its end), which may run in a thread ahead of its step. So the node
claims the slot itself, through the instance's pool storage (`claim_concurrency_slot`,
the call Dagster's own executors make), keyed by its run and step.

- No limit set for a pool (and no `concurrency.pools.default_limit`): nothing is claimed.
  A default limit initializes the pool as Dagster does for op pools.
- Waiting is interruptible (`sleep_interruptibly`, so a cancel or the run's end stops it)
  and logged once, with the limit. A provider job that already exists (a retried step)
  claims with a higher priority than new ones; otherwise the run's `dagster/priority` orders waiters.
- The slot is freed when the job ends, however it ends (`free_concurrency_slot_for_step`).
  A run whose process died never frees its slot itself: Dagster's run monitoring frees the
  slots of ended runs when `run_monitoring.free_slots_after_run_end_seconds` is set.
- `concurrency.pools.granularity: run` does not apply: these slots are per provider job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.storage.tags import PRIORITY_TAG

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.providers.http import sleep_interruptibly

# Dagster's pending-step priorities are signed 32-bit; a resumed job goes ahead of new ones of any run priority.
RESUME_PRIORITY_BOOST = 1_000_000
CLAIM_POLL_SECONDS = 0.5


def pool_for(provider: str) -> str:
    """The Dagster pool of a provider's jobs: its name (`replicate`, `fal`, `google-cloud`)."""
    return provider


def pool_limit(instance: dg.DagsterInstance, pool: str) -> int | None:
    """The limit of `pool` (initialized from `concurrency.pools.default_limit` when it has none), None: unlimited."""
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
    """The `ProviderSlots` of one node: slots of its provider's pool, claimed for its run and step."""

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
        pool = pool_for(provider)
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
            yield
        finally:
            storage.free_concurrency_slot_for_step(self._run_id, self._step_key)
