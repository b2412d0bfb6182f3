"""Admitting a plan: parse it, check its base, resolve what it reuses, check its spend cap; and its report.

Every door admits through `admit`. A base is READY, WAITING (pending or running) or UNUSABLE.
To a tenant, another tenant's base reads exactly as a missing one (`missing_base`), so a refusal
never tells whether the id exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from video_pipelines.errors import PlanValidationError
from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.ownership import execution_tenant
from video_pipelines.executions.records import RunRecords, RunState
from video_pipelines.executions.spending import check_estimate, expected_seconds, node_estimate
from video_pipelines.plan import Plan, execution_order, levels, parse_plan, sinks
from video_pipelines.plan.model import check_base_dependencies, normalised_node_params
from video_pipelines.plan.reuse import BaseExecution, BaseNode, ResolvedPlan, resolve
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import SubmissionState, SubmissionStore


class BaseReadiness(StrEnum):
    NONE = "none"  # the plan names no base
    UNCHECKED = "unchecked"  # it names one, and the caller did not ask to look it up
    READY = "ready"
    WAITING = "waiting"
    UNUSABLE = "unusable"


@dataclass(frozen=True)
class BaseCheck:
    readiness: BaseReadiness
    reason: str | None = None
    base: BaseExecution | None = None


@dataclass(frozen=True)
class Admission:
    plan: Plan
    base: BaseCheck
    resolved: ResolvedPlan | None  # None while the base is waiting, unusable or unchecked


def admit(
    wire: Mapping[str, Any],
    records: RunRecords | None = None,
    store: SubmissionStore | None = None,
    *,
    tenant: str | None = None,
    pricing: PricingTable | None = None,
) -> Admission:
    """Validate a plan (raises PlanValidationError) and, given `records`, check and resolve its base.

    Without `records` the base is not looked up (a submission is stored before its base ends).
    """
    plan = parse_plan(wire)
    if plan.base_execution_id is None:
        resolved = resolve(plan)
        _check_cap(plan, resolved, pricing)
        return Admission(plan, BaseCheck(BaseReadiness.NONE), resolved)
    if records is None:
        return Admission(plan, BaseCheck(BaseReadiness.UNCHECKED), None)
    check = check_base(records, store, plan.base_execution_id, tenant=tenant)
    if check.base is None:
        return Admission(plan, check, None)
    check_base_dependencies(plan, check.base.nodes)
    resolved = resolve(plan, check.base)
    _check_cap(plan, resolved, pricing)
    return Admission(plan, check, resolved)


def _check_cap(plan: Plan, resolved: ResolvedPlan, pricing: PricingTable | None) -> None:
    if plan.max_cost_usd is not None:  # the pricing file is read only for a capped plan
        check_estimate(plan, resolved, pricing or PricingTable.from_env())


def missing_base(base_id: str) -> str:
    return f"base execution {base_id} does not exist"


def check_base_owner(store: SubmissionStore, base_id: str, tenant: str, records: RunRecords | None = None) -> None:
    """Raise PlanValidationError unless `base_id` is `tenant`'s (without `records`, only submissions count)."""
    if execution_tenant(records, store, base_id) != tenant:
        raise PlanValidationError([f"plan.baseExecutionId: {missing_base(base_id)}"])


def check_base(
    records: RunRecords, store: SubmissionStore | None, base_id: str, *, tenant: str | None = None
) -> BaseCheck:
    """Whether `base_id` can serve as a base now; another `tenant`'s reads as missing."""
    if tenant is not None and execution_tenant(records, store, base_id) != tenant:
        return BaseCheck(BaseReadiness.UNUSABLE, missing_base(base_id))
    run = records.find_run(base_id)
    if run is None:
        return _submitted_base(store, base_id)
    if not run.state.is_finished:
        return BaseCheck(BaseReadiness.WAITING, f"base execution {base_id} is {run.state.value}")
    if run.state is not RunState.SUCCESS:
        state = "canceled" if run.state is RunState.CANCELED else "failed"
        reason = f"base execution {base_id} {state} (run {run.run_id}); submit against a completed base"
        return BaseCheck(BaseReadiness.UNUSABLE, reason)
    base_plan = parse_plan(run.plan, external_nodes=None)
    nodes = {
        node_id: BaseNode(
            node_id=node_id,
            operation=record.operation,
            lineage=record.lineage,
            result=record.result,
            params=normalised_node_params(base_plan.node(node_id)) if node_id in base_plan.by_id else None,
        )
        for node_id, record in ExecutionRuns.of(records, run).node_records(records).items()
    }
    final = sinks(base_plan)[-1].id
    if final not in nodes:
        reason = f"base execution {base_id} has no result for its final node {final}"
        return BaseCheck(BaseReadiness.UNUSABLE, reason)
    base = BaseExecution(execution_id=base_id, nodes=nodes, final_node_id=final)
    return BaseCheck(BaseReadiness.READY, base=base)


def _submitted_base(store: SubmissionStore | None, base_id: str) -> BaseCheck:
    submission = store.get(base_id) if store is not None else None
    if submission is None:
        return BaseCheck(BaseReadiness.UNUSABLE, missing_base(base_id))
    if submission.state is SubmissionState.REJECTED:
        return BaseCheck(BaseReadiness.UNUSABLE, f"base execution {base_id} was rejected: {submission.error}")
    if submission.state is SubmissionState.CANCELED:
        return BaseCheck(BaseReadiness.UNUSABLE, f"base execution {base_id} was canceled")
    return BaseCheck(BaseReadiness.WAITING, f"base execution {base_id} is pending")


def validation_report(admission: Admission, pricing: PricingTable) -> dict[str, Any]:
    """What the admitted plan would do (`video-pipelines validate --json`): what would run and what would be
    reused, node by node in execution order, with costs at list prices (an unknown remote price makes the
    total "+ unknown" rather than free)."""
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
