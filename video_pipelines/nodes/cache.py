"""Content-addressed reuse across executions, computed once (single-flight).

A node's lineage hash (operation, normalised params and the lineage of its inputs:
`plan.lineage`) names what it computes. When a node completes, its video is recorded in its
tenant's node-result index (`submissions.NodeResultIndex`: a table keyed by tenant and
lineage). A later execution of the same tenant that needs the same lineage takes that video
(`reused`, with `reusedFrom` the execution that made it) without naming a base:

- **at admission** (`reuse_cached`): the `plan` step looks the plan's nodes up in one query
  and reuses what it finds; the run's log says what came from where;
- **at run time** (`single_flight`): a node about to run looks again (another execution may
  have finished it since), then claims its lineage. Holding the claim it computes, records
  the result and lets the claim go. Finding the claim held by another execution's node, it
  waits for that result, and takes the claim over when that run ended without one (failed,
  canceled, its worker lost) or when the holder let go without a result. So two executions
  running at once compute a lineage once, and a failure of the first costs the second only
  the wait.

`"cache": false` on a node or on the plan opts out of both: the node is computed anew (a
fresh take of a non-deterministic model). Its result is recorded all the same, and it is
then the one later executions reuse (the newest result of a lineage wins).

What it costs: at admission one indexed query for the whole plan, at run time a lookup, a
claim and a record per computed node: each a primary-key probe, so O(log n) in the number of
recorded lineages, whatever the history (`benchmarks/bench_reuse_lookup.py` measures it).
The asset catalog is not searched: Dagster's materializations are per asset key, not per
lineage, and reading them grows with every execution's nodes.

Where a node is reused its work never runs: no provider job, no spend, no FFmpeg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from video_pipelines.nodes.runner import NodeRun
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import Action, NodeDecision, ResolvedPlan
from video_pipelines.submissions import CachedNode, NodeClaim, NodeResultIndex

Log = Callable[[str], None]

WAIT_POLL_SECONDS = 0.5


def reuse_cached(resolved: ResolvedPlan, index: NodeResultIndex, tenant: str, execution_id: str) -> ResolvedPlan:
    """`resolved` with each node to run whose lineage an earlier execution of `tenant` completed taken from it."""
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
class NodeWork:
    """A node of a run about to compute its lineage: who would hold its claim, and whether it may reuse."""

    tenant: str
    lineage: str
    execution_id: str
    node_id: str
    operation: str
    run_id: str
    cache: bool = True  # False: computed anew (`"cache": false`), its result still recorded

    def holds(self, claim: NodeClaim) -> bool:
        return (claim.run_id, claim.node_id) == (self.run_id, self.node_id)


def _reused(cached: CachedNode) -> NodeRun:
    return NodeRun(VideoResult.from_wire(cached.result), provider=None, seconds=0.0, reused_from=cached.execution_id)


def single_flight(
    index: NodeResultIndex,
    work: NodeWork,
    compute: Callable[[], NodeRun],
    *,
    run_has_ended: Callable[[str], bool],
    log: Log,
    sleep: Callable[[float], None],
    stored: Callable[[VideoResult], bool] = lambda _result: True,
    poll_seconds: float = WAIT_POLL_SECONDS,
) -> NodeRun:
    """The node's run: computed here (once over every execution of the tenant at a time), or another's result.

    `run_has_ended(run_id)` says whether a claim holder's run is over; `sleep` waits between
    looks (an interruptible sleep, so a canceled run stops waiting). A recorded result whose
    video storage no longer holds (`stored` says False) counts as none: the node computes it
    again. The result computed here is recorded in the index; whatever `compute` raises lets
    the claim go first.
    """

    def find() -> CachedNode | None:
        cached = index.find(work.tenant, work.lineage)
        return cached if cached is None or stored(VideoResult.from_wire(cached.result)) else None

    if not work.cache:
        return _record(index, work, compute())
    cached = find()
    if cached is not None:
        log(f"reused: {cached.execution_id} completed the same lineage ({cached.node_id}) meanwhile")
        return _reused(cached)
    cached = _claim(index, work, find, run_has_ended=run_has_ended, log=log, sleep=sleep, poll_seconds=poll_seconds)
    if cached is not None:
        return _reused(cached)
    try:
        # The holder may have recorded its result and let go between this node's look and its claim.
        cached = find()
        if cached is not None:
            log(f"reused: {cached.execution_id} completed the same lineage ({cached.node_id}) just before")
            _release(index, work)
            return _reused(cached)
        run = compute()
    except BaseException:
        _release(index, work)
        raise
    return _record(index, work, run)


def _claim(
    index: NodeResultIndex,
    work: NodeWork,
    find: Callable[[], CachedNode | None],
    *,
    run_has_ended: Callable[[str], bool],
    log: Log,
    sleep: Callable[[float], None],
    poll_seconds: float,
) -> CachedNode | None:
    """Hold the lineage's claim (None), or another execution's result found while waiting for it."""
    waited_for: NodeClaim | None = None
    while True:
        claim = index.claim(
            work.tenant, work.lineage, execution_id=work.execution_id, node_id=work.node_id, run_id=work.run_id
        )
        if work.holds(claim):
            return None
        cached = find()
        if cached is not None:
            log(f"reused: {cached.execution_id} computed the same lineage ({cached.node_id}) while this waited")
            return cached
        if run_has_ended(claim.run_id):
            if (
                index.take_over(claim, execution_id=work.execution_id, node_id=work.node_id, run_id=work.run_id)
                is not None
            ):
                log(
                    f"took over the same lineage from {claim.execution_id} ({claim.node_id}): its run {claim.run_id} "
                    "ended without a result"
                )
                return None
            continue
        if waited_for is None or (waited_for.run_id, waited_for.node_id) != (claim.run_id, claim.node_id):
            log(f"waiting: {claim.execution_id} is computing the same lineage ({claim.node_id}, run {claim.run_id})")
            waited_for = claim
        sleep(poll_seconds)


def _release(index: NodeResultIndex, work: NodeWork) -> None:
    index.release(work.tenant, work.lineage, run_id=work.run_id, node_id=work.node_id)


def _record(index: NodeResultIndex, work: NodeWork, run: NodeRun) -> NodeRun:
    """Record a computed result for later executions (and let this node's claim go with it)."""
    index.record(
        CachedNode(
            tenant=work.tenant,
            lineage=work.lineage,
            execution_id=work.execution_id,
            node_id=work.node_id,
            operation=work.operation,
            run_id=work.run_id,
            result=run.result.to_wire(),
            cost_usd=run.cost_usd,
        )
    )
    return run
