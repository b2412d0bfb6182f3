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
from typing import Any

import dagster as dg

from video_pipelines.errors import PlanValidationError, TransientError, VideoPipelineError
from video_pipelines.node_runner import NodeEnvironment, run_node
from video_pipelines.orchestration.assets import asset_key_for
from video_pipelines.orchestration.config import PlanConfig
from video_pipelines.orchestration.executor import in_process_or_multiprocess
from video_pipelines.orchestration.resources import ArtifactStorage, MediaPolicy
from video_pipelines.orchestration.state import NodeOutput, NodeTask, PlanState
from video_pipelines.plan import levels, lineage_hashes, parse_plan, sinks
from video_pipelines.plan.results import VideoResult

MAX_LEVELS = 12
EXECUTION_ID_TAG = "video/execution_id"
BASE_EXECUTION_ID_TAG = "video/base_execution_id"

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _execution_id(context: dg.OpExecutionContext) -> str:
    """The run's `video/execution_id` tag; a run launched directly gets its run id as the execution id."""
    execution_id = context.run.tags.get(EXECUTION_ID_TAG)
    if execution_id is None:
        execution_id = context.run_id
        context.instance.add_run_tags(context.run_id, {EXECUTION_ID_TAG: execution_id})
    return execution_id


@dg.op(
    out={
        "state": dg.Out(PlanState, is_required=False),
        "tasks": dg.DynamicOut(NodeTask, is_required=False),
    },
)
def plan(
    context: dg.OpExecutionContext, config: PlanConfig
) -> Iterator[dg.Output[PlanState] | dg.DynamicOutput[NodeTask]]:
    """Validate the execution plan and start the nodes that need no other node."""
    execution_id = _execution_id(context)
    try:
        parsed = parse_plan(config.to_wire(), max_depth=MAX_LEVELS)
    except PlanValidationError as exc:
        raise dg.Failure(description="invalid plan:\n" + "\n".join(exc.problems), allow_retries=False) from None
    if parsed.base_execution_id is not None:
        raise dg.Failure(
            description=f"plan.baseExecutionId: variants of {parsed.base_execution_id} are launched "
            "through submissions (video-pipelines submit); this deployment cannot resolve bases in a direct run yet",
            allow_retries=False,
        )
    state = PlanState(execution_id, parsed, lineage_hashes(parsed), levels(parsed))
    order = sorted(parsed.nodes, key=lambda node: state.levels[node.id])
    context.log.info(
        f"execution {execution_id}: {len(parsed.nodes)} nodes in {max(state.levels.values()) + 1} levels: "
        + ", ".join(f"{node.id} ({node.operation.value}, level {state.levels[node.id]})" for node in order)
    )
    yield dg.Output(state, output_name="state")
    yield from state.tasks(0)


@dg.op(retry_policy=TRANSIENT_RETRY)
def run_plan_node(
    context: dg.OpExecutionContext,
    task: NodeTask,
    artifact_storage: ArtifactStorage,
    media_policy: MediaPolicy,
) -> NodeOutput:
    """Run one plan node on real media and record its video as an asset materialization."""
    node = task.node
    env = NodeEnvironment(
        store=artifact_storage.store(),
        allowed_hosts=media_policy.hosts(),
        timeout=media_policy.operation_timeout_seconds,
    )
    context.log.info(f"{node.id}: {node.operation.value} on {len(task.inputs)} input(s), lineage {task.lineage[:12]}")
    try:
        run = run_node(
            node,
            inputs=task.inputs,
            upstream=task.upstream,
            lineage=task.lineage,
            env=env,
            log=lambda message: context.log.info(f"{node.id}: {message}"),
        )
    except TransientError:
        raise  # RetryPolicy retries it
    except VideoPipelineError as exc:
        raise dg.Failure(description=f"{node.id} ({node.operation.value}) failed: {exc}", allow_retries=False) from exc
    result = run.result
    context.log_event(
        dg.AssetMaterialization(
            asset_key=asset_key_for(node.operation),
            description=f"{node.id} of execution {task.execution_id}",
            metadata=_result_metadata(task, result, provider=run.provider, seconds=run.seconds, status="completed"),
        )
    )
    context.log.info(f"{node.id}: {result.duration}s {result.width}x{result.height} -> {result.url}")
    return NodeOutput(node.id, result)


def _result_metadata(
    task: NodeTask, result: VideoResult, *, provider: str | None, seconds: float, status: str
) -> dict[str, Any]:
    return {
        "execution_id": task.execution_id,
        "node_id": task.node.id,
        "operation": task.node.operation.value,
        "status": status,
        "lineage": task.lineage,
        "provider": provider or "",
        "work_seconds": float(seconds),
        "url": dg.MetadataValue.url(result.url),
        "duration": float(result.duration),
        "width": result.width,
        "height": result.height,
        "aspect_ratio": result.aspect_ratio,
        "size_bytes": result.size_bytes,
        "sha256": result.sha256,
        "result": dg.MetadataValue.json(result.to_wire()),
    }


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
    if next_level > max(state.levels.values()):
        final = sinks(state.plan)[-1]
        result = state.results[final.id]
        context.log.info(
            f"execution {state.execution_id} completed: final video {final.id} "
            f"({result.duration}s {result.width}x{result.height}) {result.url}"
        )
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
