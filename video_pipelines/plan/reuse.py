"""Variants: which nodes a plan takes from its base execution (same id, same lineage hash) instead of computing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from video_pipelines.errors import PlanValidationError
from video_pipelines.plan.lineage import lineage_hashes
from video_pipelines.plan.model import (
    Plan,
    PlanNode,
    ancestors,
    dependency_levels,
    execution_order,
    normalised_node_params,
    sinks,
)
from video_pipelines.plan.results import VideoResult


@dataclass(frozen=True)
class BaseNode:
    """A completed node of the base execution, as its records describe it."""

    node_id: str
    operation: str
    lineage: str
    result: VideoResult
    params: Mapping[str, Any] | None = None  # normalised; only used to explain recomputes


@dataclass(frozen=True)
class BaseExecution:
    execution_id: str
    nodes: Mapping[str, BaseNode]
    final_node_id: str

    @property
    def final(self) -> BaseNode:
        return self.nodes[self.final_node_id]


class Action(StrEnum):
    RUN = "run"
    REUSE = "reuse"


@dataclass(frozen=True)
class NodeDecision:
    node_id: str
    action: Action
    reason: str
    reused_from: str | None = None  # the base execution the result comes from
    result: VideoResult | None = None
    # A node an earlier run of the same execution completed: that run, and what its work cost there.
    carried_from_run: str | None = None
    cost_usd: float = 0.0


@dataclass(frozen=True)
class ResolvedPlan:
    """A plan with its base resolved: lineage, a decision per node and the base's outputs it uses."""

    plan: Plan
    lineage: dict[str, str]
    decisions: dict[str, NodeDecision]
    external: dict[str, VideoResult] = field(default_factory=dict)  # base-only dependencies
    base_final: VideoResult | None = None

    @property
    def to_run(self) -> list[PlanNode]:
        return [node for node in self.plan.nodes if self.decisions[node.id].action is Action.RUN]

    @property
    def reused(self) -> list[NodeDecision]:
        return [d for d in self.decisions.values() if d.action is Action.REUSE]

    def run_levels(self) -> dict[str, int]:
        """Levels of the nodes that run; reused nodes and base outputs are ready from the start."""
        to_run = self.to_run
        runs = {node.id for node in to_run}
        return dependency_levels({node.id: [dep for dep in node.depends_on if dep in runs] for node in to_run})

    def inputs(self, node: PlanNode, results: Mapping[str, VideoResult]) -> list[VideoResult]:
        """The input videos of `node` in dependsOn order, given the plan's results so far."""
        if not node.consumes_inputs:
            return []
        if not node.depends_on and self.base_final is not None:
            return [self.base_final]
        return [self.result(dep, results) for dep in node.depends_on]

    def upstream(self, node: PlanNode, results: Mapping[str, VideoResult]) -> dict[str, VideoResult]:
        """The results `{{refs}}` of `node` may name."""
        return {dep: self.result(dep, results) for dep in sorted(ancestors(self.plan, node.id))}

    def result(self, node_id: str, results: Mapping[str, VideoResult] | None = None) -> VideoResult:
        """The video of a node that does not run here (reused, carried) or of a dependency only the base has;
        of a node that runs, its entry in `results` (the plan's results so far)."""
        if node_id in self.plan.by_id:
            decision = self.decisions[node_id]
            return decision.result if decision.result is not None else (results or {})[node_id]
        return self.external[node_id]


def resolve(plan: Plan, base: BaseExecution | None = None) -> ResolvedPlan:
    """Decide, node by node, what runs and what is reused from `base`."""
    if base is None:
        decisions = {node.id: NodeDecision(node.id, Action.RUN, "new") for node in plan.nodes}
        return ResolvedPlan(plan, lineage_hashes(plan), decisions)

    external_ids = {dep for node in plan.nodes for dep in node.depends_on if dep not in plan.by_id}
    missing = sorted(external_ids - set(base.nodes))
    if missing:
        raise PlanValidationError(
            [
                f"plan.jobs: dependsOn names {node_id}, which is neither in the plan nor in base {base.execution_id}"
                for node_id in missing
            ]
        )
    needs_final = any(node.consumes_inputs and not node.depends_on for node in plan.nodes)
    lineage = lineage_hashes(
        plan,
        external={node_id: base.nodes[node_id].lineage for node_id in external_ids},
        base_final=base.final.lineage if needs_final else None,
    )
    decisions = {node.id: _decide(node, lineage, base) for node in plan.nodes}
    return ResolvedPlan(
        plan,
        lineage,
        decisions,
        external={node_id: base.nodes[node_id].result for node_id in sorted(external_ids)},
        base_final=base.final.result if needs_final else None,
    )


def _decide(node: PlanNode, lineage: Mapping[str, str], base: BaseExecution) -> NodeDecision:
    base_node = base.nodes.get(node.id)
    if base_node is None:
        return NodeDecision(node.id, Action.RUN, f"new: base {base.execution_id} has no completed {node.id}")
    if base_node.lineage == lineage[node.id]:
        return NodeDecision(
            node.id,
            Action.REUSE,
            f"same operation, params and inputs as {node.id} of {base.execution_id}",
            reused_from=base.execution_id,
            result=base_node.result,
        )
    if base_node.operation != node.operation.value:
        reason = f"base's {node.id} ran {base_node.operation}, this one runs {node.operation.value}: runs as a new node"
    elif base_node.params is not None and dict(base_node.params) != normalised_node_params(node):
        reason = "params differ from base"
    else:
        reason = "inputs differ from base (an upstream node changed)"
    return NodeDecision(node.id, Action.RUN, reason)


def run_where_gone(resolved: ResolvedPlan, stored: Callable[[VideoResult], bool]) -> ResolvedPlan:
    """`resolved` with each reused node whose video is needed (by a node that runs, or a sink) but no longer
    `stored` run again (storage may lose videos: bucket expiry, clean-up), last to first."""
    needed = {dep for node in resolved.to_run for dep in node.depends_on}
    needed.update(node.id for node in sinks(resolved.plan))
    decisions = dict(resolved.decisions)
    for node in reversed(execution_order(resolved.plan)):
        decision = decisions[node.id]
        if decision.action is Action.RUN:
            continue  # its inputs are already counted as needed
        if node.id not in needed or decision.result is None or stored(decision.result):
            continue
        source = decision.reused_from or (f"run {decision.carried_from_run}" if decision.carried_from_run else "")
        decisions[node.id] = NodeDecision(
            node.id,
            Action.RUN,
            f"the video it would reuse{f' from {source}' if source else ''} ({decision.result.sha256[:12]}) "
            "is no longer in storage: runs again",
        )
        needed.update(node.depends_on)
    if decisions == resolved.decisions:
        return resolved
    return replace(resolved, decisions=decisions)
