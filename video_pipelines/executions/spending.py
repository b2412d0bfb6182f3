"""What an execution may spend, what it has spent and what reuse saved, at list prices.

Everything here prices with the pricing table (`providers.pricing`, `VIDEO_PIPELINES_PRICING_FILE`):

- `node_estimate` / `plan_estimates`: what a node that runs should cost before it runs (the
  figures of `video-pipelines validate`).
- `check_estimate`: a plan's `maxCostUsd` against the estimate of the nodes it runs, at
  admission. A paid node whose price is unknown (a provider or model the table does not
  price) refuses a capped plan, naming the node: a cap cannot be kept over a cost nobody
  knows, so the plan is refused rather than that node counted as free.
- `check_node_spend`: before a paid node starts (a provider other than `local`), what the
  execution has spent so far plus the node's estimate against the cap; over it, the node
  fails with `SpendCapExceeded` and nothing is started at the provider. This catches what
  the estimate cannot: a provider that returns a longer clip than asked bills for it.
- `saved_usd`: the estimate of every reused node, i.e. what reuse saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from video_pipelines.errors import PlanValidationError, SpendCapExceeded
from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.records import NodeRecord, RunRecords, RunView
from video_pipelines.plan import Plan, PlanNode
from video_pipelines.plan.durations import expected_durations
from video_pipelines.plan.model import REMOTE_OPERATIONS
from video_pipelines.plan.params import (
    AddSubtitlesParams,
    AnyParams,
    GenerateVideoParams,
    LipSyncParams,
    parse_params,
)
from video_pipelines.plan.refs import with_samples
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.providers.pricing import DEFAULT_MODELS, PricingTable
from video_pipelines.vocabulary import NodeState

# Operations whose price depends on the provider: an unknown price there is unknown, not free.
PRICED_OPERATIONS = REMOTE_OPERATIONS


@dataclass(frozen=True)
class NodeEstimate:
    node_id: str
    usd: float | None  # None: the price is unknown


def usd(value: float) -> str:
    """A dollar amount as errors and logs show it: $0.5, $1.25, $0.0117."""
    return f"${round(value, 4):g}"


def node_estimate(
    node: PlanNode,
    resolved: ResolvedPlan | None,
    seconds: Mapping[str, float | None],
    pricing: PricingTable,
) -> NodeEstimate:
    """The list price of running `node` (its input's expected duration prices a lip-sync)."""
    input_seconds = seconds[node.depends_on[0]] if node.depends_on and node.depends_on[0] in seconds else None
    if node.consumes_inputs and not node.depends_on and resolved and resolved.base_final:
        input_seconds = resolved.base_final.duration
    params = _sampled(node)
    return NodeEstimate(node.id, _list_price(node, params, input_seconds, pricing))


def _sampled(node: PlanNode) -> AnyParams:
    """The node's params typed with sample values for its `{{refs}}` (what pricing needs before they resolve)."""
    return parse_params(node.operation, with_samples(node.params))


def _list_price(node: PlanNode, params: AnyParams, input_seconds: float | None, pricing: PricingTable) -> float | None:
    estimate = pricing.estimate(params, input_seconds=input_seconds)
    price = estimate.usd if estimate is not None and estimate.known else None
    if price is None and node.operation not in PRICED_OPERATIONS:
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


def plan_estimates(plan: Plan, resolved: ResolvedPlan | None, pricing: PricingTable) -> dict[str, NodeEstimate]:
    """The estimate of every node that runs (all of them without a resolved base), in plan order."""
    seconds = expected_seconds(plan, resolved)
    to_run = resolved.to_run if resolved else list(plan.nodes)
    return {node.id: node_estimate(node, resolved, seconds, pricing) for node in to_run}


def check_estimate(plan: Plan, resolved: ResolvedPlan | None, pricing: PricingTable) -> None:
    """Raise PlanValidationError on `plan.maxCostUsd` when the plan's estimate exceeds it (or cannot be told)."""
    cap = plan.max_cost_usd
    if cap is None:
        return
    estimates = plan_estimates(plan, resolved, pricing)
    unknown = [node_id for node_id, estimate in estimates.items() if estimate.usd is None]
    if unknown:
        raise PlanValidationError(
            [
                f"plan.maxCostUsd: the cost of {node_id} is unknown (its provider and model have no price "
                "in the pricing table), so the cap cannot be kept; price it in VIDEO_PIPELINES_PRICING_FILE "
                "or drop maxCostUsd"
                for node_id in unknown
            ]
        )
    total = round(sum(estimate.usd or 0.0 for estimate in estimates.values()), 4)
    if total > cap:
        raise PlanValidationError(
            [
                f"plan.maxCostUsd: the estimated cost {usd(total)} exceeds the cap {usd(cap)} "
                f"({_breakdown(estimates)}); raise maxCostUsd or run fewer paid nodes"
            ]
        )


def _breakdown(estimates: Mapping[str, NodeEstimate]) -> str:
    paid = [f"{node_id} {usd(e.usd)}" for node_id, e in estimates.items() if e.usd]
    return ", ".join(paid) or "no paid node"


def spent_so_far(
    plan: Plan, recorded: Mapping[str, NodeRecord], known: Mapping[str, VideoResult], pricing: PricingTable
) -> float:
    """What this execution's completed nodes cost: their recorded `cost_usd` (reused nodes cost nothing).

    A node of the plan with a video in `known` but no record yet (a node started ahead of its
    step, whose step has not recorded it) is priced as its step will record it: its list
    price for the video it made.
    """
    spent = sum(record.cost_usd for record in recorded.values() if record.state is NodeState.COMPLETED)
    for node_id, result in known.items():
        if node_id in plan.by_id and node_id not in recorded:
            spent += actual_cost(plan.node(node_id), result, pricing)
    return round(spent, 4)


def actual_cost(node: PlanNode, result: VideoResult, pricing: PricingTable) -> float:
    """What running `node` cost for `result`: its list price per second of the video it made (as run_node records)."""
    params = _sampled(node)
    if not isinstance(params, GenerateVideoParams | LipSyncParams | AddSubtitlesParams) or params.provider == "local":
        return 0.0
    model = params.model or DEFAULT_MODELS.get((node.operation, params.provider))
    return pricing.cost(params.provider, model, result.duration)


def check_node_spend(
    plan: Plan,
    node: PlanNode,
    *,
    params: AnyParams,
    inputs: Sequence[VideoResult],
    spent: float,
    pricing: PricingTable,
) -> None:
    """Raise SpendCapExceeded when starting `node` (a paid one) would take the execution over `plan.maxCostUsd`.

    `params` are the node's params with its references resolved, `inputs` its input videos
    (their durations price a lip-sync), `spent` what the execution has spent so far.
    """
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
    inputs: Sequence[VideoResult],
    upstream: Mapping[str, VideoResult],
    pricing: PricingTable,
) -> None:
    """`check_node_spend` for `node` of `run`, with the spend so far read from the run's records.

    `inputs` and `upstream` are the node's input videos and the results its refs may name (its
    step's task). Cheap for an uncapped plan or a local node: nothing is read.
    """
    if not node.is_remote:
        return
    plan = run.parsed_plan
    if plan.max_cost_usd is None:
        return
    try:
        params = node.typed_params({node_id: result.to_wire() for node_id, result in upstream.items()})
    except ValidationError:  # run_node reports it, naming the param; price it as admission did
        params = _sampled(node)
    # Every run of the execution: nodes an earlier attempt completed were paid for once, there.
    spent = spent_so_far(plan, ExecutionRuns.of(records, run).node_records(records), upstream, pricing)
    check_node_spend(plan, node, params=params, inputs=inputs, spent=spent, pricing=pricing)


def saved_usd(plan: Plan, recorded: Mapping[str, NodeRecord], pricing: PricingTable) -> float:
    """What reuse saved: the estimate of every reused node at list prices (an unpriced one counts 0).

    The estimate, as if the node ran now: a generateVideo's requested duration, a lip-sync's
    video length (the reused video's, which a lip-sync keeps).
    """
    saved = 0.0
    for node_id, record in recorded.items():
        if record.state is NodeState.REUSED and node_id in plan.by_id:
            node = plan.node(node_id)
            params = _sampled(node)
            saved += _list_price(node, params, record.result.duration, pricing) or 0.0
    return round(saved, 4)
