"""Content-addressed reuse across executions of a tenant, computed once (single-flight).

A node's lineage hash names what it computes; completed results are recorded in `NodeResultIndex`.
`reuse_cached` reuses at admission (one query per plan); `single_flight` looks again at run time, claims
the lineage, or waits for another execution's claim (taken over when that run ended without a result). Where
the claim's node is parked on a provider job and this execution may park, this node parks too, on a follow
(`submissions.waits.SAME_LINEAGE`): waiting on another execution's provider job costs no worker either.
`"cache": false` computes anew but still records (the newest result wins). Each lookup is a primary-key
probe (`benchmarks/bench_reuse_lookup.py`); Dagster's materializations are per asset key, not lineage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import Action, NodeDecision, ResolvedPlan
from video_pipelines.submissions import CachedNode, NodeClaim, NodeOrigin, NodeResultIndex
from video_pipelines.submissions.waits import SAME_LINEAGE, follow_job_id

if TYPE_CHECKING:
    from video_pipelines.nodes.runner import NodeRun

Log = Callable[[str], None]

WAIT_POLL_SECONDS = 0.5


def reuse_cached(resolved: ResolvedPlan, index: NodeResultIndex, tenant: str, execution_id: str) -> ResolvedPlan:
    wanted = {node.id: resolved.lineage[node.id] for node in resolved.to_run if resolved.plan.caches(node)}
    if not wanted:
        return resolved
    found = index.find_many(tenant, set(wanted.values()))
    decisions = dict(resolved.decisions)
    for node_id, lineage in wanted.items():
        cached = found.get(lineage)
        if cached is None or cached.execution_id == execution_id:
            continue  # its own earlier runs' nodes are carried by the attempt (`attempts.carry_completed`)
        decisions[node_id] = NodeDecision(
            node_id,
            Action.REUSE,
            f"same operation, params and inputs as {cached.node_id} of {cached.execution_id}: reused, not run",
            reused_from=cached.execution_id,
            result=VideoResult.from_wire(cached.result),
        )
    return replace(resolved, decisions=decisions)


@dataclass(frozen=True)
class NodeWork(NodeOrigin):
    cache: bool = True  # False: computed anew (`"cache": false`), its result still recorded


def single_flight(
    index: NodeResultIndex,
    work: NodeWork,
    compute: Callable[[], NodeRun],
    *,
    run_has_ended: Callable[[str], bool],
    log: Log,
    sleep: Callable[[float], None],
    stored: Callable[[VideoResult], bool] = lambda _result: True,
    parked: Callable[[NodeClaim], str | None] = lambda _holder: None,
    may_park: bool = False,
    poll_seconds: float = WAIT_POLL_SECONDS,
) -> NodeRun:
    """The node's run: computed here (once per tenant at a time), or another execution's result.

    A recorded result whose video storage no longer holds (`stored` False) counts as none. `parked`: the
    provider job ("<provider> <job id>") a claim's node is parked on, if any; with `may_park`, this node then
    raises `Parked` on a follow of the lineage instead of waiting in its worker.
    """
    # At run time only: the runner loads every operation and the HTTP client, which reuse at admission need not.
    from video_pipelines.providers.http import Parked

    if not work.cache:
        return _record(index, work, compute())
    flight = _Flight(index, work, run_has_ended, log, sleep, stored, parked, may_park, poll_seconds)
    found = flight.reused("completed", "meanwhile") or flight.claim()
    if found is not None:
        return found
    try:
        # The holder may have recorded its result and let go between this node's look and its claim.
        found = flight.reused("completed", "just before")
        if found is not None:
            _release(index, work)
            return found
        run = compute()
    except Parked:
        raise  # the claim stays with the parked node: its continuation takes it over, others wait for its result
    except BaseException:
        _release(index, work)
        raise
    return _record(index, work, run)


@dataclass(frozen=True)
class _Flight:
    index: NodeResultIndex
    work: NodeWork
    run_has_ended: Callable[[str], bool]
    log: Log
    sleep: Callable[[float], None]
    stored: Callable[[VideoResult], bool]
    parked: Callable[[NodeClaim], str | None]  # the provider job the holder's node is parked on, if any
    may_park: bool
    poll_seconds: float

    def reused(self, verb: str, when: str) -> NodeRun | None:
        cached = self.index.find(self.work.tenant, self.work.lineage)
        if cached is None or not self.stored(result := VideoResult.from_wire(cached.result)):
            return None
        self.log(f"reused: {cached.execution_id} {verb} the same lineage ({cached.node_id}) {when}")
        from video_pipelines.nodes.runner import NodeRun  # as in single_flight

        return NodeRun(result, provider=None, seconds=0.0, reused_from=cached.execution_id)

    def holder_gone(self, holder: NodeClaim) -> bool:
        if (holder.execution_id, holder.node_id) == (self.work.execution_id, self.work.node_id):
            return True  # an earlier run of this very node (it parked, or its worker was lost): this run goes on
        return self.run_has_ended(holder.run_id) and self.parked(holder) is None

    def claim(self) -> NodeRun | None:
        """Hold the lineage's claim (None), or another execution's result found while waiting."""
        work = self.work
        waited_for: NodeClaim | None = None
        while True:
            holder = self.index.claim(
                work.tenant, work.lineage, execution_id=work.execution_id, node_id=work.node_id, run_id=work.run_id
            )
            if (holder.run_id, holder.node_id) == (work.run_id, work.node_id):
                return None
            if (found := self.reused("computed", "while this waited")) is not None:
                return found
            if self.holder_gone(holder):
                taken = self.index.take_over(
                    holder, execution_id=work.execution_id, node_id=work.node_id, run_id=work.run_id
                )
                if taken is not None:
                    self.log(
                        f"took over the same lineage from {holder.execution_id} ({holder.node_id}): its run "
                        f"{holder.run_id} ended without a result"
                    )
                    return None
                continue
            if self.may_park and (job := self.parked(holder)) is not None:
                from video_pipelines.providers.http import Parked  # as in single_flight

                self.log(
                    f"parked: {holder.execution_id} ({holder.node_id}) computes the same lineage and waits on {job}; "
                    "this run gives its worker back and goes on once that result is recorded"
                )
                raise Parked(SAME_LINEAGE, follow_job_id(work.lineage, work.execution_id, work.node_id), shown=job)
            if waited_for is None or (waited_for.run_id, waited_for.node_id) != (holder.run_id, holder.node_id):
                self.log(
                    f"waiting: {holder.execution_id} is computing the same lineage ({holder.node_id}, "
                    f"run {holder.run_id})"
                )
                waited_for = holder
            self.sleep(self.poll_seconds)


def _release(index: NodeResultIndex, work: NodeWork) -> None:
    index.release(work.tenant, work.lineage, run_id=work.run_id, node_id=work.node_id)


def _record(index: NodeResultIndex, work: NodeWork, run: NodeRun) -> NodeRun:
    index.record(
        CachedNode(
            **{origin.name: getattr(work, origin.name) for origin in fields(NodeOrigin)},
            result=run.result.to_wire(),
            cost_usd=run.cost_usd,
        )
    )
    return run
