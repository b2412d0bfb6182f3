"""What an admitted plan would do: node by node in execution order, run or reuse, and what it would cost.

This is `video-pipelines validate --json`. Costs are estimated from the pricing table at
list prices, from the duration each node's video is expected to have; a remote call whose
price is unknown makes the total "+ unknown" rather than free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from video_pipelines.executions.admission import Admission
from video_pipelines.plan import Operation, PlanNode, execution_order, levels
from video_pipelines.plan.durations import expected_durations
from video_pipelines.plan.params import parse_params
from video_pipelines.plan.refs import with_samples
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.providers.pricing import PricingTable

# Operations whose price depends on the provider: an unknown price there is unknown, not free.
PRICED_OPERATIONS = (Operation.GENERATE_VIDEO, Operation.LIP_SYNC)


@dataclass(frozen=True)
class NodeEstimate:
    node_id: str
    usd: float | None  # None: the price is unknown


def node_estimate(
    node: PlanNode,
    resolved: ResolvedPlan | None,
    seconds: dict[str, float | None],
    pricing: PricingTable,
) -> NodeEstimate:
    """The list price of running `node` (its input's expected duration prices a lip-sync)."""
    input_seconds = seconds[node.depends_on[0]] if node.depends_on and node.depends_on[0] in seconds else None
    if node.consumes_inputs and not node.depends_on and resolved and resolved.base_final:
        input_seconds = resolved.base_final.duration
    params = parse_params(node.operation, with_samples(node.params))
    estimate = pricing.estimate(params, input_seconds=input_seconds)
    usd = estimate.usd if estimate is not None and estimate.known else None
    if usd is None and node.operation not in PRICED_OPERATIONS:
        usd = 0.0
    return NodeEstimate(node.id, usd)


def validation_report(admission: Admission, pricing: PricingTable) -> dict[str, Any]:
    """What would run and what would be reused, node by node in execution order, with estimated costs."""
    plan, resolved = admission.plan, admission.resolved
    seconds = expected_durations(
        plan,
        external={node_id: result.duration for node_id, result in (resolved.external if resolved else {}).items()},
        base_final=resolved.base_final.duration if resolved and resolved.base_final else None,
    )
    level = levels(plan)
    nodes = []
    total, unknown = 0.0, False
    for node in execution_order(plan):
        decision = resolved.decisions[node.id] if resolved else None
        action = decision.action.value if decision else "run"
        cost: float | None = 0.0
        if action == "run":
            cost = node_estimate(node, resolved, seconds, pricing).usd
            unknown = unknown or cost is None
            total += cost or 0.0
        nodes.append(
            {
                "id": node.id,
                "operation": node.operation.value,
                "level": level[node.id],
                "dependsOn": list(node.depends_on),
                "action": action,
                "reason": decision.reason if decision and decision.reason != "new" else None,
                "reusedFrom": decision.reused_from if decision else None,
                "estimatedCost": cost,
            }
        )
    return {
        "valid": True,
        "levels": max(level.values()) + 1,
        "baseExecutionId": plan.base_execution_id,
        "baseNote": admission.base.reason,
        "estimatedCost": round(total, 4),
        "costUnknown": unknown,
        "nodes": nodes,
    }
