"""What an admitted plan would do (`video-pipelines validate --json`): node by node, run or reuse, and cost
at list prices; an unknown remote price makes the total "+ unknown" rather than free.
"""

from __future__ import annotations

from typing import Any

from video_pipelines.executions.admission import Admission
from video_pipelines.executions.spending import expected_seconds, node_estimate
from video_pipelines.plan import execution_order, levels
from video_pipelines.providers.pricing import PricingTable


def validation_report(admission: Admission, pricing: PricingTable) -> dict[str, Any]:
    """What would run and what would be reused, node by node in execution order, with estimated costs."""
    plan, resolved = admission.plan, admission.resolved
    seconds = expected_seconds(plan, resolved)
    level = levels(plan)
    nodes = []
    total, unknown = 0.0, False
    for node in execution_order(plan):
        decision = resolved.decisions[node.id] if resolved else None
        action = decision.action.value if decision else "run"
        cost: float | None = 0.0
        if action == "run":
            cost = node_estimate(node, resolved, seconds, pricing)
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
        "maxCostUsd": plan.max_cost_usd,
        "nodes": nodes,
    }
