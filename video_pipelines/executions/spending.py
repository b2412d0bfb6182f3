"""What an execution may spend, has spent and what reuse saved, at list prices. An unknown price refuses a
capped plan; the check before each paid node catches a provider that bills a longer clip than asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from video_pipelines.errors import PlanValidationError, SpendCapExceeded
from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.records import NodeRecord, RunRecords, RunView
from video_pipelines.plan import Plan, PlanNode
from video_pipelines.plan.durations import expected_durations
from video_pipelines.plan.model import REMOTE_OPERATIONS
from video_pipelines.plan.params import AddSubtitlesParams, AnyParams, GenerateVideoParams, LipSyncParams, parse_params
from video_pipelines.plan.refs import with_samples
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.providers.pricing import DEFAULT_MODELS, PricingTable
from video_pipelines.vocabulary import NodeState


def usd(value: float) -> str:
    """A dollar amount as errors and logs show it: $0.5, $1.25, $0.0117."""
    return f"${round(value, 4):g}"


def node_estimate(
    node: PlanNode,
    resolved: ResolvedPlan | None,
    seconds: Mapping[str, float | None],
    pricing: PricingTable,
) -> float | None:
    """The list price of running `node` (its input's expected duration prices a lip-sync); None: unknown."""
    input_seconds = seconds[node.depends_on[0]] if node.depends_on and node.depends_on[0] in seconds else None
    if node.consumes_inputs and not node.depends_on and resolved and resolved.base_final:
        input_seconds = resolved.base_final.duration
    return _list_price(node, _sampled(node), input_seconds, pricing)


def _sampled(node: PlanNode) -> AnyParams:
    return parse_params(node.operation, with_samples(node.params))


def _list_price(node: PlanNode, params: AnyParams, input_seconds: float | None, pricing: PricingTable) -> float | None:
    estimate = pricing.estimate(params, input_seconds=input_seconds)
    price = estimate.usd if estimate is not None and estimate.known else None
    # Only a remote operation's price depends on its provider: an unknown price there is unknown, not free.
    if price is None and node.operation not in REMOTE_OPERATIONS:
        price = 0.0
    return price


def expected_seconds(plan: Plan, resolved: ResolvedPlan | None) -> dict[str, float | None]:
    """Each node's expected video duration, with the base's videos a variant takes."""
    external = resolved.external if resolved else {}
    return expected_durations(
        plan,
        external={node_id: result.duration for node_id, result in external.items()},
        base_final=resolved.base_final.duration if resolved and resolved.base_final else None,
    )


def check_estimate(plan: Plan, resolved: ResolvedPlan | None, pricing: PricingTable) -> None:
    """Raise PlanValidationError on `plan.maxCostUsd` when the plan's estimate exceeds it (or cannot be told)."""
    cap = plan.max_cost_usd
    if cap is None:
        return
    seconds = expected_seconds(plan, resolved)
    # Every node that runs (all of them without a resolved base), in plan order.
    to_run = resolved.to_run if resolved else list(plan.nodes)
    estimates = {node.id: node_estimate(node, resolved, seconds, pricing) for node in to_run}
    unknown = [node_id for node_id, estimate in estimates.items() if estimate is None]
    if unknown:
        raise PlanValidationError(
            [
                f"plan.maxCostUsd: the cost of {node_id} is unknown (its provider and model have no price "
                "in the pricing table), so the cap cannot be kept; price it in VIDEO_PIPELINES_PRICING_FILE "
                "or drop maxCostUsd"
                for node_id in unknown
            ]
        )
    total = round(sum(estimate or 0.0 for estimate in estimates.values()), 4)
    if total > cap:
        breakdown = ", ".join(f"{node_id} {usd(estimate)}" for node_id, estimate in estimates.items() if estimate)
        raise PlanValidationError(
            [
                f"plan.maxCostUsd: the estimated cost {usd(total)} exceeds the cap {usd(cap)} "
                f"({breakdown or 'no paid node'}); raise maxCostUsd or run fewer paid nodes"
            ]
        )


def spent_so_far(
    plan: Plan, recorded: Mapping[str, NodeRecord], known: Mapping[str, VideoResult], pricing: PricingTable
) -> float:
    """What the completed nodes cost; one with a video in `known` but no record yet is priced as its step will."""
    spent = sum(record.cost_usd for record in recorded.values() if record.state is NodeState.COMPLETED)
    for node_id, result in known.items():
        if node_id not in plan.by_id or node_id in recorded:
            continue
        node = plan.node(node_id)
        params = _sampled(node)
        if isinstance(params, GenerateVideoParams | LipSyncParams | AddSubtitlesParams) and params.provider != "local":
            model = params.model or DEFAULT_MODELS.get((node.operation, params.provider))
            spent += pricing.cost(params.provider, model, result.duration)
    return round(spent, 4)


def check_node_spend(
    plan: Plan,
    node: PlanNode,
    *,
    params: AnyParams,
    inputs: Sequence[VideoResult],
    spent: float,
    pricing: PricingTable,
) -> None:
    """Raise SpendCapExceeded when starting paid `node` would take the execution over `plan.maxCostUsd`."""
    cap = plan.max_cost_usd
    if cap is None or not node.is_remote:
        return
    estimate = _list_price(node, params, inputs[0].duration if inputs else None, pricing)
    if estimate is None:
        raise SpendCapExceeded(
            f"spend cap: {node.id} not started: its cost is unknown (no price in the pricing table), "
            f"so the cap {usd(cap)} (maxCostUsd) cannot be kept; {usd(spent)} spent so far"
        )
    if round(spent + estimate, 4) > cap:
        raise SpendCapExceeded(
            f"spend cap: {node.id} not started: {usd(spent)} spent so far + its estimate {usd(estimate)} "
            f"would exceed the cap {usd(cap)} (maxCostUsd)"
        )


def check_spend_cap(
    records: RunRecords,
    run: RunView,
    node: PlanNode,
    *,
    params: AnyParams | None,  # as the node's work typed them; None: invalid (run_node says why), priced as admitted
    inputs: Sequence[VideoResult],
    upstream: Mapping[str, VideoResult],
    pricing: PricingTable,
) -> None:
    """`check_node_spend` with the spend read from the records; reads nothing for an uncapped plan or a local node."""
    if not node.is_remote:
        return
    plan = run.parsed_plan
    if plan.max_cost_usd is None:
        return
    params = _sampled(node) if params is None else params
    # Every run of the execution: nodes an earlier attempt completed were paid for once, there.
    spent = spent_so_far(plan, ExecutionRuns.of(records, run).node_records(records), upstream, pricing)
    check_node_spend(plan, node, params=params, inputs=inputs, spent=spent, pricing=pricing)


def saved_usd(plan: Plan, recorded: Mapping[str, NodeRecord], pricing: PricingTable) -> float:
    """What reuse saved: the list-price estimate of every reused node (an unpriced one counts 0)."""
    saved = 0.0
    for node_id, record in recorded.items():
        if record.state is NodeState.REUSED and node_id in plan.by_id:
            node = plan.node(node_id)
            saved += _list_price(node, _sampled(node), record.result.duration, pricing) or 0.0
    return round(saved, 4)
