"""The `execute_plan` job: a node pool of three ops, since a job's graph is fixed when the code loads.

`plan` admits the plan and fans out one dynamic output per node to run (topological order);
`node[<id>]` runs each (finding its inputs itself, `upstream_results`); `finish` reports the final video.
A run page then lists exactly the plan's nodes that run. Node outputs are `Nothing`: the video is
in the materialization.

How a node's step finds its inputs' videos: in memory, in the run's (and re-executed runs') records, or
by waiting. Why waiting cannot deadlock: `plan` yields nodes in topological order and Dagster's executors
start executable steps first in, first out (`ActiveExecution.get_steps_to_execute`), so a step waits only
on steps started before it. Hence retries happen inside the step: Dagster's `RetryRequested` would requeue
it behind the steps waiting for it.

`DagsterRunShell` is the Dagster side of a node's work (`nodes.work.RunShell`): records, slots, spans and
tags of its run. Spans: one per node (run or reused); the execution's is recorded at its end. Their parent
comes from the run's `video/traceparent` tag, else its execution id, so every step process finds the same
parent without asking anyone.
"""

# No `from __future__ import annotations`: Dagster reads op and config annotations at runtime.

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.executor.base import Executor
from dagster._core.executor.init import InitExecutorContext
from dagster._core.storage.tags import PRIORITY_TAG
from opentelemetry.trace import Span

from video_pipelines.deployment.workers import priority_of_tag
from video_pipelines.errors import PlanValidationError
from video_pipelines.executions import admit, cancel_requested
from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.records import EXECUTION_ID_TAG, MAX_RUNTIME_TAG, TRACEPARENT_TAG, deadline_tags
from video_pipelines.executions.reuse import decide_reuse
from video_pipelines.executions.spending import check_spend_cap
from video_pipelines.nodes.head_start import HeadStarts, Log
from video_pipelines.nodes.ledger import RunTagLedger
from video_pipelines.nodes.retries import NodeFailed, run_with_retries
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.nodes.tasks import NodeTask, PlannedNode, planned_nodes
from video_pipelines.nodes.work import RunNodes, start_ready
from video_pipelines.operations.checks import CheckOutcome
from video_pipelines.orchestration.catalog.assets import (
    add_execution,
    check_evaluation,
    node_materialization,
    reused_materializations,
)
from video_pipelines.orchestration.job.config import EXAMPLE_PLAN, PlanConfig
from video_pipelines.orchestration.run_records import (
    NODE_OP,
    DagsterRunRecords,
    mapping_key,
    plan_of_run,
    run_view,
    step_key,
)
from video_pipelines.plan import Plan, parse_plan, sinks
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import NodeDecision, ResolvedPlan
from video_pipelines.providers.http import sleep_interruptibly
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import NodeResultIndex
from video_pipelines.submissions.counters import observe_node_seconds
from video_pipelines.telemetry.trace_context import TraceContext, execution_context
from video_pipelines.telemetry.tracing import best_effort, span_in, tracing
from video_pipelines.vocabulary import NodeState

POLL_SECONDS = 0.25
_STEP_ENDS = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}


@dataclass(frozen=True)
class NotRun:
    dependency: str
    failed: bool


def earlier_results(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, tuple[str, VideoResult]]:
    """The videos (with their lineage) of the runs `run` re-executes, by node id; a later run wins."""
    records = DagsterRunRecords(instance)
    chain: list[str] = []
    parent_id = run.parent_run_id
    while parent_id is not None and parent_id not in chain:
        chain.append(parent_id)
        parent = instance.get_run_by_id(parent_id)
        parent_id = parent.parent_run_id if parent is not None else None
    found: dict[str, tuple[str, VideoResult]] = {}
    for run_id in reversed(chain):
        found.update({node_id: (r.lineage, r.result) for node_id, r in records.node_records(run_id).items()})
    return found


def _look(
    instance: dg.DagsterInstance, run_id: str, needs: Mapping[str, str]
) -> tuple[dict[str, VideoResult], dict[str, bool]]:
    """The needed videos recorded so far, and the needed steps that ended (failed?)."""
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, *_STEP_ENDS}
    found: dict[str, VideoResult] = {}
    ended: dict[str, bool] = {}
    keys = {step_key(node_id): node_id for node_id in needs}
    for record in instance.get_records_for_run(run_id, of_type=kinds, limit=100_000).records:
        entry = record.event_log_entry
        materialization = entry.asset_materialization
        if materialization is not None:
            metadata = materialization.metadata
            node_id = metadata["node_id"].value if "node_id" in metadata else None
            if node_id in needs and metadata["lineage"].value == needs[str(node_id)]:
                found[str(node_id)] = VideoResult.from_wire(metadata["result"].value)  # type: ignore[arg-type]
        elif entry.step_key in keys:
            ended[keys[entry.step_key]] = entry.dagster_event_type == dg.DagsterEventType.STEP_FAILURE
    return found, ended


def upstream_results(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    planned: PlannedNode,
    in_memory: Mapping[str, VideoResult],
    *,
    wait: bool,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = sleep_interruptibly,
) -> dict[str, VideoResult] | NotRun:
    """The videos `planned` needs, or one whose step ended without one (a failed one first).

    `wait`: poll until each needed step ended (multiprocess executor); else look once (in-process).
    """
    needs = planned.needs
    found = {node_id: in_memory[node_id] for node_id in needs if node_id in in_memory}
    if len(found) == len(needs):
        return found
    if run.parent_run_id is not None:
        earlier = earlier_results(instance, run)
        found.update(
            {node_id: earlier[node_id][1] for node_id in needs if earlier.get(node_id, ("",))[0] == needs[node_id]}
        )
    waiting = False
    while True:
        missing = {node_id: lineage for node_id, lineage in needs.items() if node_id not in found}
        if not missing:
            return found
        recorded, ended = _look(instance, run.run_id, missing)
        found.update(recorded)
        gone = [node_id for node_id in missing if node_id not in found and (node_id in ended or not wait)]
        if gone:
            # The cause first (which of the two ended first is a race between steps in other processes).
            cause = next((node_id for node_id in gone if ended.get(node_id)), gone[0])
            return NotRun(cause, failed=ended.get(cause, False))
        if len(found) < len(needs):
            if not waiting:
                log(f"waiting for {', '.join(node_id for node_id in missing if node_id not in found)}")
                waiting = True
            sleep(POLL_SECONDS)


# Per-provider limits on Dagster's concurrency pools: one pool per provider, named as the provider.
# Not `@op(pool=...)`: one op runs every node whatever its provider, and the slot must be held by the
# provider job, which may run in a thread ahead of its step. So the node claims it itself
# (`claim_concurrency_slot`, as Dagster's executors do). No limit set: nothing claimed. A resumed job
# claims ahead of new ones. A dead run's slot is freed by run monitoring
# (`run_monitoring.free_slots_after_run_end_seconds`).
# Dagster's pending-step priorities are signed 32-bit; a resumed job goes ahead of new ones of any run priority.
RESUME_PRIORITY_BOOST = 1_000_000
CLAIM_POLL_SECONDS = 0.5


def pool_limit(instance: dg.DagsterInstance, pool: str) -> int | None:
    """The limit of `pool` (initialized from `concurrency.pools.default_limit`), None: unlimited."""
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
        pool = provider  # one pool per provider, named as the provider
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


def run_trace(run: dg.DagsterRun) -> TraceContext:
    return execution_context(run.tags.get(TRACEPARENT_TAG), run.tags.get(EXECUTION_ID_TAG, run.run_id))


class NodeSpan:
    def __init__(self, span: Span) -> None:
        self.span = span

    def ran(self, run: NodeRun) -> None:
        self.span.set_attributes(
            {
                "video_pipelines.provider": run.provider or "local",
                "video_pipelines.work_seconds": run.seconds,
                "video_pipelines.cost_usd": run.cost_usd,
            }
        )
        if run.model:
            self.span.set_attribute("video_pipelines.model", run.model)


@best_effort
def trace_reused(context: dg.OpExecutionContext, execution_id: str, plan: Plan, reused: Iterable[NodeDecision]) -> None:
    if not tracing().enabled:
        return
    parent = run_trace(context.run)
    for decision in reused:
        attributes = {
            "video_pipelines.execution_id": execution_id,
            "video_pipelines.node_id": decision.node_id,
            "video_pipelines.operation": plan.node(decision.node_id).operation.value,
            "video_pipelines.reused": True,
            "video_pipelines.reused_from": decision.reused_from or "",
            "video_pipelines.run_id": context.run_id,
        }
        with span_in(parent, f"node {decision.node_id}", attributes=attributes):
            pass


class DagsterRunShell:
    def __init__(self, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
        self._instance = instance
        self._run = run

    @property
    def run_id(self) -> str:
        return self._run.run_id

    def check_spend(self, task: NodeTask, pricing: PricingTable) -> None:
        records = DagsterRunRecords(self._instance)
        check_spend_cap(
            records, run_view(self._run), task.node, inputs=task.inputs, upstream=task.upstream, pricing=pricing
        )

    def slots(self, node_id: str, log: Log) -> DagsterProviderSlots:
        return DagsterProviderSlots(self._instance, self._run, step_key=step_key(node_id), log=log)

    @contextmanager
    def span(self, task: NodeTask, attempt: int) -> Iterator[NodeSpan]:
        """The span `node <id>` around a node's work; given the run, not a step's context (work may run ahead)."""
        node = task.node
        attributes = {
            "video_pipelines.execution_id": task.execution_id,
            "video_pipelines.node_id": node.id,
            "video_pipelines.operation": node.operation.value,
            "video_pipelines.reused": False,
            "video_pipelines.run_id": self._run.run_id,
            "video_pipelines.attempt": attempt,
        }
        with span_in(run_trace(self._run), f"node {node.id}", attributes=attributes) as span:
            yield NodeSpan(span)

    def ledger(self, node_id: str, lock: threading.Lock) -> RunTagLedger:
        return RunTagLedger(self._instance, self._run.run_id, node_id, lock)

    def run_has_ended(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    def plan_caches(self) -> bool:
        return plan_of_run(self._run).get("cache", True) is not False


def execution_id_of(context: dg.OpExecutionContext) -> str:
    """The run's `video/execution_id` tag; a run launched directly gets its run id."""
    execution_id = context.run.tags.get(EXECUTION_ID_TAG)
    if execution_id is None:
        execution_id = context.run_id
        context.instance.add_run_tags(context.run_id, {EXECUTION_ID_TAG: execution_id})
    return execution_id


def head_starts_of(context: dg.OpExecutionContext, nodes: RunNodes) -> HeadStarts | None:
    """The run's `HeadStarts` when every step runs in this process (read from the executor config), else None."""
    execution = context.get_step_execution_context().resolved_run_config.execution
    in_process = execution.execution_engine_name is None or "in_process" in execution.execution_engine_config
    return nodes.started if in_process else None


def _invalid(description: str) -> dg.Failure:  # a failure no retry would fix
    return dg.Failure(description=description, allow_retries=False)


def _admit(context: dg.OpExecutionContext, config: PlanConfig, execution_id: str, nodes: RunNodes) -> ResolvedPlan:
    records = DagsterRunRecords(context.instance)
    try:
        admission = admit(config.to_wire(), records)
    except PlanValidationError as exc:
        raise _invalid("invalid plan:\n" + "\n".join(exc.problems)) from None
    if admission.resolved is None:
        raise _invalid(f"plan.baseExecutionId: {admission.base.reason}")
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


@dg.op(out=dg.DynamicOut(PlannedNode))
def plan(
    context: dg.OpExecutionContext, config: PlanConfig, head_starts: dg.ResourceParam[RunNodes]
) -> Iterator[dg.DynamicOutput[PlannedNode]]:
    """Validate the execution plan, reuse what is already made, and hand out its nodes to run."""
    execution_id = execution_id_of(context)
    if cancel_requested(head_starts.store(), run_view(context.run)):
        # Canceled while launched: a step failing while its run is CANCELING ends the run CANCELED.
        context.instance.report_run_canceling(context.run, message=f"execution {execution_id} was canceled")
        raise _invalid(f"execution {execution_id} was canceled while its run was launched: no node runs")
    resolved = _admit(context, config, execution_id, head_starts)
    # Before any node's materialization: the catalog lists each node of the execution under its kind.
    add_execution(context.instance, execution_id, resolved.plan.nodes)
    if (deadline := deadline_tags(resolved.plan.timeout_seconds)) and MAX_RUNTIME_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run_id, deadline)  # launched from the UI: run monitoring reads it now
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
        raise _invalid(str(exc)) from exc.__cause__
    if started is not None:
        started.record(node.id, run.result)
        start_ready(head_starts, started, shell, context.log.info)
    checks = head_starts.take_checks(node.id, task.lineage) if run.reused_from is None else []
    context.log_event(
        node_materialization(
            task.execution_id,
            node,
            task.lineage,
            run,
            state=NodeState.COMPLETED if run.reused_from is None else NodeState.REUSED,
            artifacts=head_starts.env().store,
            check_seconds=float(checks[0].metadata.get("check_seconds", 0.0)) if checks else 0.0,
        )
    )
    _log_checks(context, task, checks)
    if run.reused_from is None:
        observe_node_seconds(
            head_starts.store(), node.operation.value, run.provider, run.seconds, warn=context.log.warning
        )
    context.log.info(f"{node.id}: {run.result.duration}s {run.result.width}x{run.result.height} -> {run.result.url}")
    yield dg.Output(None)


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


# In-process by default: a multiprocess step costs 0.7-1.8 s of process start-up (measured on 2 cores), and
# x264's threads keep both cores busy already, so local nodes side by side buy nothing.
@dg.executor(
    name="in_process_or_multiprocess",
    config_schema=dg.Field(
        dg.Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG}),  # type: ignore[no-untyped-call]
        default_value={"in_process": {}},
    ),
    requirements=lambda config: list(multiple_process_executor_requirements()) if "multiprocess" in config else [],
)
def in_process_or_multiprocess(init_context: InitExecutorContext) -> Executor:
    """In-process unless run config selects multiprocess."""
    config = init_context.executor_config
    if "multiprocess" in config:
        return _core_multiprocess_executor_creation(config["multiprocess"])  # type: ignore[arg-type]
    return _core_in_process_executor_creation(config["in_process"])  # type: ignore[arg-type]


@dg.job(
    name="execute_plan",
    description="Run an AI-video execution plan: one step per plan node, each writing a real MP4.",
    executor_def=in_process_or_multiprocess,
    tags={"video/kind": "execution_plan"},
    config={"ops": {"plan": {"config": EXAMPLE_PLAN}}},
)
def execute_plan() -> None:
    finish(plan().map(run_plan_node).collect())
