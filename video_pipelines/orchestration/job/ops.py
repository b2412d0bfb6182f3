"""The `execute_plan` job: one Dagster step per plan node, on any plan.

A Dagster job's graph is fixed when the code loads, while every plan has its own shape. The
job is therefore a node pool of three ops: `plan` validates and admits the plan (reuse,
carried nodes, spend cap) and fans out one dynamic output per node to run, in topological
order; `node[<node id>]` runs each of them; `finish` collects them and reports the final
video. A run page lists exactly the plan's nodes that run: no steps for depths a plan does
not have, nothing skipped, no `[?]` box left when the run ends.

A node's step depends, for Dagster, on `plan` alone, so it finds its inputs' videos itself
when it starts (`upstream.py`): in memory with the in-process executor (our default, see
`executor.py`), whose steps run one at a time in yield order, so a node's upstream steps
ran before it; in the run's records with the multiprocess one, waiting until they exist.
That module's docstring says why the wait cannot deadlock: steps start first in, first out in
topological order, and transient failures are retried inside the step (`MAX_RETRIES`).
A node whose input's step failed is not run: its step logs "not run: <input> failed" and
ends without output, and `finish` is not run either (the failed step failed the run).

Remote nodes do not wait for their steps: with the in-process executor each starts ahead,
in a thread of the run's process, as soon as its own inputs exist (`head_start.py`), and its
step awaits it. So a plan's remote calls overlap and its wall approaches its critical path.
The multiprocess executor starts nothing ahead (each step is another process, which could
not await a thread of this one).

Only what a step needs crosses the IO manager (`io_managers.py`): the planned nodes. A
node's output is `Nothing` (its video is in its materialization), and `finish` returns
nothing, so neither writes nor reads a step output.
"""

# No `from __future__ import annotations`: Dagster reads op and config annotations at runtime.

import threading
from collections.abc import Callable, Iterator, Sequence

import dagster as dg

from video_pipelines.errors import PlanValidationError, TransientError, TransientStorageError, VideoPipelineError
from video_pipelines.executions import EXECUTION_ID_TAG, PROVIDER_JOB_TAG_PREFIX, Admission, admit, cancel_requested
from video_pipelines.executions.attempts import ExecutionRuns, carry_completed
from video_pipelines.executions.metrics import counting_provider_errors, observe_node_seconds
from video_pipelines.executions.records import MAX_RUNTIME_TAG, deadline_tags
from video_pipelines.executions.spending import check_spend_cap
from video_pipelines.net.retrying import backoff_delay
from video_pipelines.nodes.cache import NodeWork, reuse_cached, single_flight
from video_pipelines.nodes.checks import audio_expected
from video_pipelines.nodes.head_start import HeadStarts, Log, Work, await_result
from video_pipelines.nodes.runner import NodeChecks, NodeEnvironment, NodeRun, run_node, still_stored
from video_pipelines.operations.checks import (
    DEFAULT_BLOCKING,
    CheckName,
    CheckOutcome,
    MediaChecksFailed,
)
from video_pipelines.orchestration.catalog.assets import add_execution, asset_key_for, check_evaluation, partition_key
from video_pipelines.orchestration.catalog.previews import node_preview
from video_pipelines.orchestration.job.config import EXAMPLE_PLAN, PlanConfig
from video_pipelines.orchestration.job.executor import in_process_or_multiprocess
from video_pipelines.orchestration.job.state import NODE_OP, NodeTask, PlannedNode, mapping_key, planned_nodes, step_key
from video_pipelines.orchestration.job.traces import node_span, trace_reused
from video_pipelines.orchestration.job.upstream import NotRun, earlier_results, upstream_results
from video_pipelines.orchestration.resources.artifacts import ArtifactStorage, MediaPolicy, SubmissionStoreResource
from video_pipelines.orchestration.resources.provider_slots import DagsterProviderSlots
from video_pipelines.orchestration.resources.providers import FalResource, GoogleVertexResource, ReplicateResource
from video_pipelines.orchestration.run_records import DagsterRunRecords, plan_of_run, run_view
from video_pipelines.plan import PlanNode, parse_plan, sinks
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan, run_where_gone
from video_pipelines.providers.context import limiting_provider_jobs
from video_pipelines.providers.http import Abandoned, sleep_interruptibly
from video_pipelines.storage import ArtifactStore
from video_pipelines.submissions import DEFAULT_TENANT, NodeResultIndex, SubmissionStore
from video_pipelines.vocabulary import NodeState

# Transient errors are retried with exponential backoff and jitter: 2 s, 4 s, 8 s (each +-50%),
# inside the step. Not a dg.RetryPolicy on the op: Dagster applies it to interrupts too, so a
# step terminated by a cancel would be started again. Not RetryRequested either: it puts the
# step back at the end of the executor's queue, behind the steps of the nodes that need its
# video (the in-process executor would run them first, the multiprocess one could fill every
# slot with steps waiting for it). The loop retries exactly the errors our hierarchy calls transient.
MAX_RETRIES = 3
RETRY_BASE_DELAY_SECONDS = 2.0


def _execution_id(context: dg.OpExecutionContext) -> str:
    """The run's `video/execution_id` tag; a run launched directly gets its run id as the execution id."""
    execution_id = context.run.tags.get(EXECUTION_ID_TAG)
    if execution_id is None:
        execution_id = context.run_id
        context.instance.add_run_tags(context.run_id, {EXECUTION_ID_TAG: execution_id})
    return execution_id


class RunTagLedger:
    """Remembers a node's provider job on its run's tags, so a retried step resumes it (and the UI shows it).

    Dagster writes run tags by reading them, merging and writing them back whole, so two
    writes at once lose one: three nodes started ahead remember their jobs within
    milliseconds (measured: 40 of 60 such tags lost). So the writes of one run's nodes take
    turns (`lock`, one per run's execution), and each is read back and written again if
    another process's write overtook it.
    """

    WRITE_ATTEMPTS = 3

    def __init__(self, instance: dg.DagsterInstance, run_id: str, node_id: str, lock: threading.Lock) -> None:
        self._instance = instance
        self._run_id = run_id
        self._key = PROVIDER_JOB_TAG_PREFIX + node_id
        self._lock = lock

    def recall(self) -> str | None:
        run = self._instance.get_run_by_id(self._run_id)
        return run.tags.get(self._key) if run is not None else None

    def remember(self, job_id: str) -> None:
        with self._lock:
            for _ in range(self.WRITE_ATTEMPTS):
                self._instance.add_run_tags(self._run_id, {self._key: job_id})
                if self.recall() == job_id:
                    return
        # run_job cancels the job it could not remember: a retried step creates it again.
        raise TransientStorageError(
            f"run {self._run_id}: tag {self._key} did not hold after {self.WRITE_ATTEMPTS} writes"
        )


class RunNodes:
    """How the nodes of one run's execution run: their environment, and the remote ones started ahead."""

    def __init__(
        self,
        make_env: Callable[[], NodeEnvironment],
        store: Callable[[], SubmissionStore],
        blocking: frozenset[CheckName] = DEFAULT_BLOCKING,
    ) -> None:
        self._make_env = make_env
        self._store = store
        self.blocking = blocking  # the media checks whose failure fails the node
        self.audio: dict[str, bool] = {}  # whether each node's video should have sound, once the plan is known
        # The media checks of the nodes computed here, by (node id, lineage), until their steps log them.
        self._checks: dict[tuple[str, str], list[CheckOutcome]] = {}
        self._env: NodeEnvironment | None = None
        self._env_lock = threading.Lock()  # the threads of nodes started ahead ask for it too
        self.tags_lock = threading.Lock()  # see RunTagLedger
        self.started = HeadStarts()
        self._tenants: dict[str, str] = {}

    def env(self) -> NodeEnvironment:
        with self._env_lock:
            if self._env is None:  # built on first use, once per run (per step with the multiprocess executor)
                self._env = self._make_env()
            return self._env

    def store(self) -> SubmissionStore:
        return self._store()

    def record_checks(self, node_id: str, lineage: str, outcomes: list[CheckOutcome]) -> None:
        self._checks[(node_id, lineage)] = outcomes

    def take_checks(self, node_id: str, lineage: str) -> list[CheckOutcome]:
        """The media checks of the node's video computed in this run (none for a video reused from elsewhere)."""
        return self._checks.pop((node_id, lineage), [])

    def tenant(self, execution_id: str) -> str:
        """The tenant whose node-result index the execution's nodes use (`DEFAULT_TENANT` for a direct launch)."""
        if execution_id not in self._tenants:
            submission = self.store().get(execution_id)
            self._tenants[execution_id] = submission.tenant if submission is not None else DEFAULT_TENANT
        return self._tenants[execution_id]


@dg.resource(
    description="How a run's plan nodes run: their environment, and the remote nodes started ahead of their steps.",
    required_resource_keys={"artifact_storage", "media_policy", "replicate", "fal", "google_cloud", "submissions"},
)
def head_starts(init_context: dg.InitResourceContext) -> Iterator[RunNodes]:
    """One per run's execution (in-process: the whole run); the work started ahead ends with it."""
    resources = init_context.resources
    artifact_storage: ArtifactStorage = resources.artifact_storage
    media_policy: MediaPolicy = resources.media_policy
    submissions: SubmissionStoreResource = resources.submissions
    replicate: ReplicateResource = resources.replicate
    fal: FalResource = resources.fal
    google_cloud: GoogleVertexResource = resources.google_cloud

    def make_env() -> NodeEnvironment:
        return NodeEnvironment(
            store=artifact_storage.store(),
            allowed_hosts=media_policy.hosts(),
            timeout=media_policy.operation_timeout_seconds,
            remote={"replicate": replicate.factory(), "fal": fal.factory(), "google-cloud": google_cloud.factory()},
        )

    # A typo in the blocking checks fails the run here, before any node runs, naming the setting.
    nodes = RunNodes(make_env, submissions.store, blocking=media_policy.blocking())
    try:
        yield nodes
    finally:
        abandoned = nodes.started.close()
        if abandoned and init_context.log is not None:
            init_context.log.warning(
                f"{', '.join(sorted(abandoned))}: started ahead, abandoned when the run ended; "
                "their provider jobs were canceled"
            )


def _head_starts(context: dg.OpExecutionContext, nodes: RunNodes) -> HeadStarts | None:
    """The run's `HeadStarts` when every step of the run executes in this process, else None.

    Read from the run's executor config (a step's context does not hold the executor): the
    in-process executor, or `execute_in_process`. With the multiprocess executor each step is
    a process of its own, whose threads would end with it.
    """
    execution = context.get_step_execution_context().resolved_run_config.execution
    in_process = execution.execution_engine_name is None or "in_process" in execution.execution_engine_config
    return nodes.started if in_process else None


def _task_key(task: NodeTask) -> object:
    """What work started ahead must have been started with for a step to take it."""
    return (task.inputs, task.upstream, task.lineage)


def _node_work(
    nodes: RunNodes, instance: dg.DagsterInstance, run: dg.DagsterRun, task: NodeTask, *, step: str, attempt: int
) -> Work:
    """The node's work, with its span, its provider-error counting and its provider slots (held as `step`).

    Takes no step context: the work may run in a thread ahead of its step, while others run.
    """
    node = task.node

    def compute(log: Log, warn: Log) -> NodeRun:
        # Before anything starts at the provider: a paid node past the plan's maxCostUsd fails here.
        check_spend_cap(
            DagsterRunRecords(instance),
            run_view(run),
            node,
            inputs=task.inputs,
            upstream=task.upstream,
            pricing=nodes.env().pricing,
        )
        slots = DagsterProviderSlots(instance, run, step_key=step, log=log)
        with (
            counting_provider_errors(nodes.store(), warn=warn),
            node_span(run, task, attempt=attempt) as span,
            limiting_provider_jobs(slots),
        ):
            result = run_node(
                node,
                inputs=task.inputs,
                upstream=task.upstream,
                lineage=task.lineage,
                env=nodes.env(),
                log=log,
                ledger=RunTagLedger(instance, run.run_id, node.id, nodes.tags_lock),
                # Inside the single flight: a video that fails a blocking check is never stored nor recorded.
                checks=NodeChecks(audio=task.audio_expected, blocking=nodes.blocking),
            )
            span.ran(result)
        # They wait for the node's step, which logs them (the work may run ahead of it, in a thread).
        nodes.record_checks(node.id, task.lineage, result.checks)
        return result

    def work(log: Log, warn: Log) -> NodeRun:
        # Computed once over every execution of the tenant that needs this lineage now (executions.node_cache).
        flight = NodeWork(
            tenant=nodes.tenant(task.execution_id),
            lineage=task.lineage,
            execution_id=task.execution_id,
            node_id=node.id,
            operation=node.operation.value,
            run_id=run.run_id,
            cache=node.cache and plan_of_run(run).get("cache", True) is not False,  # the node's and the plan's
        )
        return single_flight(
            NodeResultIndex(nodes.store()),
            flight,
            lambda: compute(log, warn),
            run_has_ended=lambda run_id: _run_has_ended(instance, run_id),
            log=log,
            sleep=sleep_interruptibly,
            stored=still_stored(nodes.env().store, warn),
        )

    return work


def _run_has_ended(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is None or run.is_finished


def _start_ready(
    nodes: RunNodes, started: HeadStarts, instance: dg.DagsterInstance, run: dg.DagsterRun, log: Log
) -> None:
    """Start, each in a thread ahead of its step, the remote nodes whose inputs all exist now."""
    for ready in started.ready():
        node = ready.node
        task = NodeTask(
            started.execution_id, node, ready.inputs, ready.upstream, ready.lineage, nodes.audio.get(node.id, False)
        )
        work = _node_work(nodes, instance, run, task, step=step_key(node.id), attempt=1)

        def then(done: NodeRun, log: Log, node_id: str = node.id) -> None:
            started.record(node_id, done.result)
            _start_ready(nodes, started, instance, run, log)

        if started.start(node.id, _task_key(task), work, then=then):
            log(f"{node.id}: started ahead of its step: its inputs all exist")


def _invalid(description: str) -> dg.Failure:
    return dg.Failure(description=description, allow_retries=False)


def _admit(context: dg.OpExecutionContext, config: PlanConfig, execution_id: str, nodes: RunNodes) -> ResolvedPlan:
    """Admit the plan: its base (if any), what earlier runs of the execution completed, what earlier executions did."""
    records = DagsterRunRecords(context.instance)
    try:
        admission: Admission = admit(config.to_wire(), records)
    except PlanValidationError as exc:
        raise _invalid("invalid plan:\n" + "\n".join(exc.problems)) from None
    if admission.resolved is None:
        raise _invalid(f"plan.baseExecutionId: {admission.base.reason}")
    resolved = admission.resolved
    earlier = [run for run in records.execution_runs(execution_id) if run.run_id != context.run_id]
    if earlier:  # a resume, a retry or a re-execution: what an earlier run completed is not run again
        resolved = carry_completed(resolved, ExecutionRuns(tuple(earlier)).node_records(records))
    decided = resolved.decisions
    resolved = reuse_cached(resolved, NodeResultIndex(nodes.store()), nodes.tenant(execution_id), execution_id)
    if resolved.reused:  # a video storage has lost since (expired, deleted) is made again
        resolved = run_where_gone(resolved, still_stored(nodes.env().store, context.log.warning))
    if admission.plan.base_execution_id is not None or earlier or resolved.decisions != decided:
        for decision in resolved.decisions.values():
            context.log.info(f"{decision.node_id}: {decision.action.value}: {decision.reason}")
    return resolved


@dg.op(out=dg.DynamicOut(PlannedNode))
def plan(
    context: dg.OpExecutionContext, config: PlanConfig, head_starts: dg.ResourceParam[RunNodes]
) -> Iterator[dg.DynamicOutput[PlannedNode]]:
    """Validate the execution plan, reuse what is already made, and hand out its nodes to run."""
    execution_id = _execution_id(context)
    if cancel_requested(head_starts.store(), run_view(context.run)):
        # Canceled while its run was being launched: nothing starts, not even a head start. A step
        # that fails while its run is CANCELING ends the run CANCELED.
        context.instance.report_run_canceling(context.run, message=f"execution {execution_id} was canceled")
        raise dg.Failure(
            description=f"execution {execution_id} was canceled while its run was launched: no node runs",
            allow_retries=False,
        )
    resolved = _admit(context, config, execution_id, head_starts)
    # Before any node's materialization: the catalog lists each node of the execution under its kind.
    add_execution(context.instance, execution_id, resolved.plan.nodes)
    if (deadline := deadline_tags(resolved.plan.timeout_seconds)) and MAX_RUNTIME_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run_id, deadline)  # launched from the UI: run monitoring reads it now
    parsed = resolved.plan
    for decision in resolved.reused:
        assert decision.result is not None
        node = parsed.node(decision.node_id)
        computed = decision.carried_from_run is not None and decision.reused_from is None
        context.log_event(
            _materialization(
                execution_id,
                node,
                resolved.lineage[node.id],
                decision.result,
                # A node an earlier run of this execution computed stays completed (and paid for once, there).
                state=NodeState.COMPLETED if computed else NodeState.REUSED,
                reused_from=decision.reused_from,
                cost_usd=decision.cost_usd,
                carried_from_run=decision.carried_from_run,
                artifacts=head_starts.env().store,
            )
        )
    trace_reused(context, execution_id, parsed, [d for d in resolved.reused if d.carried_from_run is None])
    planned = planned_nodes(execution_id, resolved)
    context.log.info(
        f"execution {execution_id}: {len(parsed.nodes)} nodes, {len(resolved.reused)} reused, "
        f"{len(planned)} to run" + (": " + ", ".join(_shape(p) for p in planned) if planned else "")
    )
    started = _head_starts(context, head_starts)
    if started is not None and planned:
        head_starts.audio.update(audio_expected(parsed))
        started.know(execution_id, resolved)
        _start_ready(head_starts, started, context.instance, context.run, context.log.info)
    for each in planned:
        yield dg.DynamicOutput(each, mapping_key=mapping_key(each.node.id))


def _shape(planned: PlannedNode) -> str:
    """A node to run and the nodes it takes videos from: the plan's edges, which the job's graph cannot draw."""
    after = planned.node.depends_on
    return f"{planned.node.id} (after {', '.join(after)})" if after else planned.node.id


@dg.op(name=NODE_OP, out=dg.Out(dg.Nothing, is_required=False))
def run_plan_node(
    context: dg.OpExecutionContext, planned: PlannedNode, head_starts: dg.ResourceParam[RunNodes]
) -> Iterator[dg.Output[None]]:
    """Run one plan node on real media and record its video as an asset materialization."""
    node = planned.node
    started = _head_starts(context, head_starts)
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
        context.log.warning(f"{node.id}: {results.message}")
        return
    task = planned.task(results)
    context.log.info(f"{node.id}: {node.operation.value} on {len(task.inputs)} input(s), lineage {task.lineage[:12]}")
    run = _run_with_retries(context, head_starts, started, task)
    result = run.result
    checks = head_starts.take_checks(node.id, task.lineage) if run.reused_from is None else []
    if started is not None:
        started.record(node.id, result)
        _start_ready(head_starts, started, context.instance, context.run, context.log.info)
    context.log_event(
        _materialization(
            task.execution_id,
            node,
            task.lineage,
            result,
            state=NodeState.COMPLETED if run.reused_from is None else NodeState.REUSED,
            provider=run.provider,
            seconds=run.seconds,
            cost_usd=run.cost_usd,
            model=run.model,
            reused_from=run.reused_from,
            artifacts=head_starts.env().store,
            check_seconds=float(checks[0].metadata.get("check_seconds", 0.0)) if checks else 0.0,
        )
    )
    _log_checks(context, task, checks)
    if run.reused_from is None:
        observe_node_seconds(
            head_starts.store(), node.operation.value, run.provider, run.seconds, warn=context.log.warning
        )
    context.log.info(f"{node.id}: {result.duration}s {result.width}x{result.height} -> {result.url}")
    yield dg.Output(None)


def _run_with_retries(
    context: dg.OpExecutionContext, nodes: RunNodes, started: HeadStarts | None, task: NodeTask
) -> NodeRun:
    """The node's run, its transient failures retried here (see MAX_RETRIES); a dg.Failure when it fails."""
    node = task.node
    attempt = 1
    while True:
        try:
            return _run_or_await(context, nodes, started, task, attempt)
        except MediaChecksFailed as exc:
            _log_checks(context, task, exc.outcomes)
            _halt(started, node)
            # Not retried: the same work makes the same video. Not recorded: no materialization, nothing to reuse.
            raise dg.Failure(
                description=f"{node.id} ({node.operation.value}) failed: {exc}", allow_retries=False
            ) from exc
        except TransientError as exc:
            if attempt > MAX_RETRIES:
                _halt(started, node)
                raise dg.Failure(
                    description=f"{node.id} ({node.operation.value}) failed after {attempt} attempts: {exc}",
                    allow_retries=False,
                ) from exc
            delay = backoff_delay(attempt - 1, base=RETRY_BASE_DELAY_SECONDS)
            context.log.warning(f"{node.id}: transient failure, attempt {attempt}: {exc}; retrying in {delay:.1f} s")
            sleep_interruptibly(delay)
            attempt += 1
        except VideoPipelineError as exc:
            _halt(started, node)
            raise dg.Failure(
                description=f"{node.id} ({node.operation.value}) failed: {exc}", allow_retries=False
            ) from exc
        except Abandoned:
            why = (started.halted_by if started is not None else None) or "the run is ending"
            raise dg.Failure(
                description=f"{node.id} ({node.operation.value}) canceled: {why}, so the run fails",
                allow_retries=False,
            ) from None


def _log_checks(context: dg.OpExecutionContext, task: NodeTask, outcomes: Sequence[CheckOutcome]) -> None:
    """Each media check as an evaluation of the node's asset check, on its partition; failures also in the log."""
    for outcome in outcomes:
        evaluation = check_evaluation(task.node.operation, task.execution_id, task.node.id, outcome)
        context.log_event(evaluation)  # type: ignore[arg-type]  # log_event takes check evaluations (its annotation lags)
        if not outcome.passed:
            (context.log.error if outcome.blocking else context.log.warning)(f"{task.node.id}: {outcome.message}")


def _run_or_await(
    context: dg.OpExecutionContext, nodes: RunNodes, started: HeadStarts | None, task: NodeTask, attempt: int
) -> NodeRun:
    """The node's run: awaited when it was started ahead (its lines passed on), else run here and now."""
    node = task.node

    def info(message: str) -> None:
        context.log.info(f"{node.id}: {message}")

    def warning(message: str) -> None:
        context.log.warning(f"{node.id}: {message}")

    ahead = started.take(node.id, _task_key(task)) if started is not None else None
    if ahead is not None:
        info("awaiting its work, started ahead of this step")
        return await_result(ahead, log=info, warn=warning)
    if started is not None and started.halted_by is not None and node.is_remote:
        raise Abandoned  # another node failed for good: no provider job for a run that will fail
    step = context.get_step_execution_context().step.key
    work = _node_work(nodes, context.instance, context.run, task, step=step, attempt=attempt)
    return work(info, context.log.warning)


def _halt(started: HeadStarts | None, node: PlanNode) -> None:
    if started is not None:
        started.halt(f"{node.id} failed")


def _materialization(
    execution_id: str,
    node: PlanNode,
    lineage: str,
    result: VideoResult,
    *,
    state: NodeState,
    provider: str | None = None,
    seconds: float = 0.0,
    reused_from: str | None = None,
    cost_usd: float = 0.0,
    model: str | None = None,
    carried_from_run: str | None = None,
    artifacts: ArtifactStore | None = None,
    check_seconds: float = 0.0,
) -> dg.AssetMaterialization:
    """The record of one node's video: what the catalog shows and what status and variants read."""
    return dg.AssetMaterialization(
        asset_key=asset_key_for(node.operation),
        partition=partition_key(execution_id, node.id),  # the catalog's way from an execution id to its videos
        description=f"{node.id} of execution {execution_id}"
        + (f" (reused from {reused_from})" if reused_from else "")
        + (f" (completed by run {carried_from_run})" if carried_from_run else ""),
        metadata={
            "execution_id": execution_id,
            "node_id": node.id,
            "operation": node.operation.value,
            "status": state.value,
            "reused_from": reused_from or "",
            "carried_from_run": carried_from_run or "",
            "lineage": lineage,
            "provider": provider or "",
            "model": model or "",
            "cost_usd": float(cost_usd),
            "work_seconds": float(seconds),
            "check_seconds": float(check_seconds),  # what the media checks added (0.0: not checked in this run)
            "url": dg.MetadataValue.url(result.url),
            "duration": float(result.duration),
            "width": result.width,
            "height": result.height,
            "aspect_ratio": result.aspect_ratio,
            "size_bytes": result.size_bytes,
            "sha256": result.sha256,
            "result": dg.MetadataValue.json(result.to_wire()),
            # A thumbnail a person can see in the UI, the video's link and where the file is.
            **(node_preview(artifacts, result, node_id=node.id) if artifacts is not None else {}),
        },
    )


@dg.op(ins={"nodes": dg.In(dg.Nothing)}, out={})
def finish(context: dg.OpExecutionContext) -> Iterator[dg.Output[None]]:
    """Report the execution's final video, once every node of the plan has one."""
    execution_id = _execution_id(context)
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
    # What the Launchpad opens with: a small plan that runs as it is (every resource's config has a default).
    config={"ops": {"plan": {"config": EXAMPLE_PLAN}}},
)
def execute_plan() -> None:
    finish(plan().map(run_plan_node).collect())
