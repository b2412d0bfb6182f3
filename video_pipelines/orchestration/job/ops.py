"""The `execute_plan` job: a node pool of three ops, since a job's graph is fixed when the code loads.

`plan` admits the plan and fans out one dynamic output per node to run (topological order);
`node[<id>]` runs each (finding its inputs itself, `upstream.py`); `finish` reports the final video.
A run page then lists exactly the plan's nodes that run. Node outputs are `Nothing`: the video is
in the materialization.
"""

# No `from __future__ import annotations`: Dagster reads op and config annotations at runtime.

from collections.abc import Iterator, Sequence

import dagster as dg

from video_pipelines.errors import PlanValidationError
from video_pipelines.executions import admit, cancel_requested
from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.records import MAX_RUNTIME_TAG, PROVIDER_JOB_TAG_PREFIX, deadline_tags
from video_pipelines.executions.reuse import decide_reuse
from video_pipelines.nodes.retries import NodeFailed, run_with_retries
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.nodes.tasks import NodeTask, PlannedNode, planned_nodes
from video_pipelines.nodes.work import RunNodes, start_ready
from video_pipelines.operations.checks import CheckOutcome
from video_pipelines.orchestration.catalog.assets import add_node_partitions, check_evaluation
from video_pipelines.orchestration.catalog.previews import node_materialization, reused_materializations
from video_pipelines.orchestration.job.config import EXAMPLE_PLAN, PlanConfig
from video_pipelines.orchestration.job.executor import in_process_or_multiprocess
from video_pipelines.orchestration.job.failures import StepFailed, node_failure
from video_pipelines.orchestration.job.shell import DagsterRunShell, execution_id_of, head_starts_of
from video_pipelines.orchestration.job.state import NODE_OP, mapping_key
from video_pipelines.orchestration.job.traces import trace_reused
from video_pipelines.orchestration.job.upstream import NotRun, earlier_results, upstream_results
from video_pipelines.orchestration.run_records import DagsterRunRecords, plan_of_run, run_view
from video_pipelines.plan import parse_plan, sinks
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.providers.http import Parked
from video_pipelines.submissions import NodeResultIndex, ProviderWaits
from video_pipelines.submissions.counters import count_node_work
from video_pipelines.vocabulary import NodeState


def _admit(context: dg.OpExecutionContext, config: PlanConfig, execution_id: str, nodes: RunNodes) -> ResolvedPlan:
    records = DagsterRunRecords(context.instance)
    try:
        admission = admit(config.to_wire(), records, nodes.store())  # as every door: a submitted base is known
    except PlanValidationError as exc:
        raise StepFailed("invalid plan:\n" + "\n".join(exc.problems), FIX_THE_PLAN) from None
    if admission.resolved is None:
        raise StepFailed(f"plan.baseExecutionId: {admission.base.reason}", FIX_THE_PLAN)
    earlier = [run for run in records.execution_runs(execution_id) if run.run_id != context.run_id]
    resolved = decide_reuse(
        admission.resolved,
        NodeResultIndex(nodes.store()),
        tenant=nodes.tenant(execution_id),
        execution_id=execution_id,
        artifacts=lambda: nodes.env().store,
        warn=context.log.warning,
        earlier=ExecutionRuns(tuple(earlier)).node_records(records) if earlier else None,
    )
    if admission.plan.base_execution_id is not None or earlier or resolved.decisions != admission.resolved.decisions:
        for decision in resolved.decisions.values():
            context.log.info(f"{decision.node_id}: {decision.action.value}: {decision.reason}")
    return resolved


FIX_THE_PLAN = "fix the plan (each line names the node and field) and submit it again"


@dg.op(out=dg.DynamicOut(PlannedNode))
def plan(
    context: dg.OpExecutionContext, config: PlanConfig, head_starts: dg.ResourceParam[RunNodes]
) -> Iterator[dg.DynamicOutput[PlannedNode]]:
    """Validate the execution plan, reuse what is already made, and hand out its nodes to run."""
    execution_id = execution_id_of(context)
    if cancel_requested(head_starts.store(), run_view(context.run)):
        # Canceled while launched: a step failing while its run is CANCELING ends the run CANCELED.
        context.instance.report_run_canceling(context.run, message=f"execution {execution_id} was canceled")
        raise StepFailed(f"execution {execution_id} was canceled while its run was launched: no node runs")
    resolved = _admit(context, config, execution_id, head_starts)
    if (deadline := deadline_tags(resolved.plan.timeout_seconds)) and MAX_RUNTIME_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run_id, deadline)  # launched from the UI: run monitoring reads it now
    add_node_partitions(context.instance, execution_id, [resolved.plan.node(d.node_id) for d in resolved.reused])
    for materialization in reused_materializations(execution_id, resolved, head_starts.env().store):
        context.log_event(materialization)
    trace_reused(context, execution_id, resolved.plan, [d for d in resolved.reused if d.carried_from_run is None])
    planned = planned_nodes(execution_id, resolved)
    context.log.info(
        f"execution {execution_id}: {len(resolved.plan.nodes)} nodes, {len(resolved.reused)} reused, "
        f"{len(planned)} to run" + (": " + ", ".join(_shape(p) for p in planned) if planned else "")
    )
    started = head_starts_of(context, head_starts)
    if started is not None and planned:
        started.know(execution_id, resolved)
        start_ready(head_starts, started, DagsterRunShell(context.instance, context.run), context.log.info)
    for each in planned:
        yield dg.DynamicOutput(each, mapping_key=mapping_key(each.node.id))


def _shape(planned: PlannedNode) -> str:
    """A node and the nodes it takes videos from: the plan's edges, which the job's graph cannot draw."""
    after = planned.node.depends_on
    return f"{planned.node.id} (after {', '.join(after)})" if after else planned.node.id


@dg.op(name=NODE_OP, out=dg.Out(dg.Nothing, is_required=False))
def run_plan_node(
    context: dg.OpExecutionContext, planned: PlannedNode, head_starts: dg.ResourceParam[RunNodes]
) -> Iterator[dg.Output[None]]:
    """Run one plan node on real media and record its video as an asset materialization."""
    node = planned.node
    started = head_starts_of(context, head_starts)
    results = upstream_results(
        context.instance,
        context.run,
        planned,
        started.results() if started is not None else {},
        wait=started is None,  # each step in its own process: its inputs' steps may still be running
        log=lambda line: context.log.info(f"{node.id}: {line}"),
    )
    if isinstance(results, NotRun):
        # No work, no video: the nodes that need it are not run either; the run fails with its input's step.
        context.log.warning(f"{node.id}: not run: {results.dependency} {'failed' if results.failed else 'did not run'}")
        return
    task = planned.task(results)
    context.log.info(f"{node.id}: {node.operation.value} on {len(task.inputs)} input(s), lineage {task.lineage[:12]}")
    shell = DagsterRunShell(context.instance, context.run)
    try:
        run = run_with_retries(
            head_starts,
            shell,
            started,
            task,
            log=context.log.info,
            warn=context.log.warning,
            log_checks=lambda outcomes: _log_checks(context, task, outcomes),
        )
    except NodeFailed as exc:
        raise node_failure(context.log, task, exc) from None
    except Parked as parked:  # recorded where it parked (`nodes.work`)
        # No output: the nodes after it wait for the continuation this job's end launches.
        context.log.info(f"{node.id}: parked: {parked}; the run gives its worker back, a continuation collects it")
        return
    if PROVIDER_JOB_TAG_PREFIX + node.id in context.run.tags:  # a continuation or resume took over its job
        ProviderWaits(head_starts.store()).collect_node(task.execution_id, node.id)
    if started is not None:
        started.record(node.id, run.result)
        start_ready(head_starts, started, shell, context.log.info)
    _record_run(context, head_starts, task, run)
    yield dg.Output(None)


def _record_run(context: dg.OpExecutionContext, nodes: RunNodes, task: NodeTask, run: NodeRun) -> None:
    node, result = task.node, run.result
    checks = nodes.take_checks(node.id, task.lineage) if run.reused_from is None else []
    add_node_partitions(context.instance, task.execution_id, [node])
    context.log_event(
        node_materialization(
            task.execution_id,
            node,
            task.lineage,
            run,
            state=NodeState.COMPLETED if run.reused_from is None else NodeState.REUSED,
            artifacts=nodes.env().store,
            check_seconds=float(checks[0].metadata.get("check_seconds", 0.0)) if checks else 0.0,
        )
    )
    _log_checks(context, task, checks)
    if run.reused_from is None:
        count_node_work(
            nodes.store(), node.operation.value, run.provider, run.seconds, run.cost_usd, warn=context.log.warning
        )
    context.log.info(f"{node.id}: {result.duration}s {result.width}x{result.height} -> {result.url}")


def _log_checks(context: dg.OpExecutionContext, task: NodeTask, outcomes: Sequence[CheckOutcome]) -> None:
    for outcome in outcomes:
        evaluation = check_evaluation(task.node.operation, task.execution_id, task.node.id, outcome)
        context.log_event(evaluation)  # type: ignore[arg-type]  # log_event takes check evaluations (its annotation lags)
        if not outcome.passed:
            (context.log.error if outcome.blocking else context.log.warning)(f"{task.node.id}: {outcome.message}")


@dg.op(ins={"nodes": dg.In(dg.Nothing)}, out={})
def finish(context: dg.OpExecutionContext) -> Iterator[dg.Output[None]]:
    """Report the execution's final video, once every node of the plan has one."""
    execution_id = execution_id_of(context)
    final_id = sinks(parse_plan(plan_of_run(context.run)))[-1].id
    videos = {node_id: result for node_id, (_lineage, result) in earlier_results(context.instance, context.run).items()}
    videos.update(
        {node_id: r.result for node_id, r in DagsterRunRecords(context.instance).node_records(context.run_id).items()}
    )
    result = videos.get(final_id)
    if result is None:
        context.log.warning(f"execution {execution_id}: no video recorded for its final node {final_id}")
    else:
        context.log.info(
            f"execution {execution_id} completed: final video {final_id} "
            f"({result.duration}s {result.width}x{result.height}) {result.url}"
        )
    yield from ()  # no output (a generator: Dagster's way to an op with `out={}` and a typed signature)


@dg.job(
    name="execute_plan",
    description="Run an AI-video execution plan: one step per plan node, each writing a real MP4.",
    executor_def=in_process_or_multiprocess,
    tags={"video/kind": "execution_plan"},
    config={"ops": {"plan": {"config": EXAMPLE_PLAN}}},
)
def execute_plan() -> None:
    finish(plan().map(run_plan_node).collect())
