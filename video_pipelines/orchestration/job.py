"""The `execute_plan` job: one Dagster step per plan node, on any plan.

A Dagster job's graph is fixed when the code loads, while every plan has its own shape.
The job therefore runs a plan level by level: `plan` validates the plan and fans out the
nodes of level 0 as dynamic outputs, `level_0[<node>]` runs each of them, `level_0_done`
collects their videos and fans out level 1, and so on up to `MAX_LEVELS`. A level with
nothing to run yields nothing, so the rest of the graph is skipped without work.

What levels cost: a node starts when every node of the previous level is done, not only
its own inputs. With the in-process executor (our default, see `executor.py`) steps run
one at a time anyway, so nothing is lost there.
"""

# No `from __future__ import annotations`: Dagster reads op and config annotations at runtime.

from collections.abc import Iterator

import dagster as dg

from video_pipelines.errors import PlanValidationError, TransientError, VideoPipelineError
from video_pipelines.executions import EXECUTION_ID_TAG, MAX_LEVELS, PROVIDER_JOB_TAG_PREFIX, Admission, admit
from video_pipelines.node_runner import NodeEnvironment, run_node
from video_pipelines.orchestration.assets import asset_key_for
from video_pipelines.orchestration.config import PlanConfig
from video_pipelines.orchestration.executor import in_process_or_multiprocess
from video_pipelines.orchestration.provider_resources import FalResource, GoogleVertexResource, ReplicateResource
from video_pipelines.orchestration.resources import ArtifactStorage, MediaPolicy, SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.state import NodeOutput, NodeTask, PlanState
from video_pipelines.orchestration.traces import node_span, trace_reused
from video_pipelines.plan import PlanNode
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.retrying import backoff_delay
from video_pipelines.telemetry.metrics import counting_provider_errors, observe_node_seconds
from video_pipelines.vocabulary import NodeState

# Transient errors are retried with exponential backoff and jitter: 2 s, 4 s, 8 s (each +-50%).
# Not a dg.RetryPolicy on the op: Dagster applies an op's RetryPolicy to interrupts too, so a
# step terminated by a cancel would be started again. Raising RetryRequested ourselves retries
# exactly the errors our hierarchy calls transient.
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
    """Remembers a node's provider job on its run's tags, so a retried step resumes it (and the UI shows it)."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, node_id: str) -> None:
        self._instance = instance
        self._run_id = run_id
        self._key = PROVIDER_JOB_TAG_PREFIX + node_id

    def recall(self) -> str | None:
        run = self._instance.get_run_by_id(self._run_id)
        return run.tags.get(self._key) if run is not None else None

    def remember(self, job_id: str) -> None:
        self._instance.add_run_tags(self._run_id, {self._key: job_id})


def _invalid(description: str) -> dg.Failure:
    return dg.Failure(description=description, allow_retries=False)


def _admit(context: dg.OpExecutionContext, config: PlanConfig) -> ResolvedPlan:
    """Admit the plan against its base (if any) and log every reuse decision."""
    try:
        admission: Admission = admit(config.to_wire(), DagsterRunRecords(context.instance))
    except PlanValidationError as exc:
        raise _invalid("invalid plan:\n" + "\n".join(exc.problems)) from None
    if admission.resolved is None:
        raise _invalid(f"plan.baseExecutionId: {admission.base.reason}")
    if admission.plan.base_execution_id is not None:
        for decision in admission.resolved.decisions.values():
            context.log.info(f"{decision.node_id}: {decision.action.value}: {decision.reason}")
    return admission.resolved


@dg.op(
    out={
        "state": dg.Out(PlanState, is_required=False),
        "tasks": dg.DynamicOut(NodeTask, is_required=False),
    },
)
def plan(
    context: dg.OpExecutionContext, config: PlanConfig
) -> Iterator[dg.Output[PlanState] | dg.DynamicOutput[NodeTask]]:
    """Validate the execution plan, reuse what its base already made, and start the first nodes."""
    execution_id = _execution_id(context)
    resolved = _admit(context, config)
    parsed = resolved.plan
    for decision in resolved.reused:
        assert decision.result is not None
        node = parsed.node(decision.node_id)
        context.log_event(
            _materialization(
                execution_id,
                node,
                resolved.lineage[node.id],
                decision.result,
                state=NodeState.REUSED,
                reused_from=decision.reused_from,
            )
        )
    trace_reused(context, execution_id, parsed, resolved.reused)
    state = PlanState(execution_id, resolved, resolved.run_levels())
    context.log.info(
        f"execution {execution_id}: {len(parsed.nodes)} nodes, {len(resolved.reused)} reused, "
        f"{len(state.levels)} to run in {state.last_level + 1} level(s): "
        + ", ".join(f"{node_id} (level {level})" for node_id, level in state.levels.items())
    )
    if not state.levels:
        _log_final(context, state)
        return
    yield dg.Output(state, output_name="state")
    yield from state.tasks(0)


def _log_final(context: dg.OpExecutionContext, state: PlanState) -> None:
    final_id, result = state.final()
    context.log.info(
        f"execution {state.execution_id} completed: final video {final_id} "
        f"({result.duration}s {result.width}x{result.height}) {result.url}"
    )


@dg.op
def run_plan_node(
    context: dg.OpExecutionContext,
    task: NodeTask,
    artifact_storage: ArtifactStorage,
    media_policy: MediaPolicy,
    replicate: ReplicateResource,
    fal: FalResource,
    google_cloud: GoogleVertexResource,
    submissions: SubmissionStoreResource,
) -> NodeOutput:
    """Run one plan node on real media and record its video as an asset materialization."""
    node = task.node
    env = NodeEnvironment(
        store=artifact_storage.store(),
        allowed_hosts=media_policy.hosts(),
        timeout=media_policy.operation_timeout_seconds,
        remote={"replicate": replicate.factory(), "fal": fal.factory(), "google-cloud": google_cloud.factory()},
    )
    context.log.info(f"{node.id}: {node.operation.value} on {len(task.inputs)} input(s), lineage {task.lineage[:12]}")
    try:
        with counting_provider_errors(submissions.store(), warn=context.log.warning), node_span(context, task) as span:
            run = run_node(
                node,
                inputs=task.inputs,
                upstream=task.upstream,
                lineage=task.lineage,
                env=env,
                log=lambda message: context.log.info(f"{node.id}: {message}"),
                ledger=RunTagLedger(context.instance, context.run_id, node.id),
            )
            span.ran(run)
    except TransientError as exc:
        attempt = context.retry_number + 1
        if attempt > MAX_RETRIES:
            raise dg.Failure(
                description=f"{node.id} ({node.operation.value}) failed after {attempt} attempts: {exc}",
                allow_retries=False,
            ) from exc
        context.log.warning(f"{node.id}: transient failure, attempt {attempt}: {exc}")
        delay = backoff_delay(context.retry_number, base=RETRY_BASE_DELAY_SECONDS)
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=delay) from exc
    except VideoPipelineError as exc:
        raise dg.Failure(description=f"{node.id} ({node.operation.value}) failed: {exc}", allow_retries=False) from exc
    result = run.result
    context.log_event(
        _materialization(
            task.execution_id,
            node,
            task.lineage,
            result,
            state=NodeState.COMPLETED,
            provider=run.provider,
            seconds=run.seconds,
            cost_usd=run.cost_usd,
            model=run.model,
        )
    )
    observe_node_seconds(submissions.store(), node.operation.value, run.provider, run.seconds, warn=context.log.warning)
    context.log.info(f"{node.id}: {result.duration}s {result.width}x{result.height} -> {result.url}")
    return NodeOutput(node.id, result)


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
) -> dg.AssetMaterialization:
    """The record of one node's video: what the catalog shows and what status and variants read."""
    return dg.AssetMaterialization(
        asset_key=asset_key_for(node.operation),
        description=f"{node.id} of execution {execution_id}" + (f" (reused from {reused_from})" if reused_from else ""),
        metadata={
            "execution_id": execution_id,
            "node_id": node.id,
            "operation": node.operation.value,
            "status": state.value,
            "reused_from": reused_from or "",
            "lineage": lineage,
            "provider": provider or "",
            "model": model or "",
            "cost_usd": float(cost_usd),
            "work_seconds": float(seconds),
            "url": dg.MetadataValue.url(result.url),
            "duration": float(result.duration),
            "width": result.width,
            "height": result.height,
            "aspect_ratio": result.aspect_ratio,
            "size_bytes": result.size_bytes,
            "sha256": result.sha256,
            "result": dg.MetadataValue.json(result.to_wire()),
        },
    )


@dg.op(
    out={
        "state": dg.Out(PlanState, is_required=False),
        "tasks": dg.DynamicOut(NodeTask, is_required=False),
    },
)
def finish_level(
    context: dg.OpExecutionContext, state: PlanState, outputs: list[NodeOutput]
) -> Iterator[dg.Output[PlanState] | dg.DynamicOutput[NodeTask]]:
    """Collect a level's videos and start the next level's nodes (or report the final video)."""
    state = state.with_outputs(outputs)
    next_level = 1 + max(state.levels[out.node_id] for out in outputs)
    if next_level > state.last_level:
        _log_final(context, state)
        return
    yield dg.Output(state, output_name="state")
    yield from state.tasks(next_level)


@dg.job(
    name="execute_plan",
    description="Run an AI-video execution plan: one step per plan node, each writing a real MP4.",
    executor_def=in_process_or_multiprocess,
    tags={"video/kind": "execution_plan"},
)
def execute_plan() -> None:
    state, tasks = plan()
    for level in range(MAX_LEVELS):
        outputs = tasks.map(run_plan_node.alias(f"level_{level}"))
        state, tasks = finish_level.alias(f"level_{level}_done")(state, outputs.collect())
