"""Reading executions back from Dagster's own records: runs by execution id, node results, bases.

Node results come from the run's asset materializations (the records the UI shows), never
from a side cache that could drift from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.storage.dagster_run import RunRecord

from video_pipelines.errors import BaseNotReady, BaseUnusable
from video_pipelines.plan import parse_plan, sinks
from video_pipelines.plan.model import normalised_node_params
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import BaseExecution, BaseNode

EXECUTION_ID_TAG = "video/execution_id"
BASE_EXECUTION_ID_TAG = "video/base_execution_id"

UNFINISHED = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


@dataclass(frozen=True)
class NodeRecord:
    """One node's materialization in a run."""

    node_id: str
    operation: str
    status: str  # completed | reused
    lineage: str
    result: VideoResult
    reused_from: str | None
    metadata: Mapping[str, Any]


def find_run(instance: dg.DagsterInstance, execution_id: str) -> RunRecord | None:
    """The newest run of an execution (its `video/execution_id` tag)."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={EXECUTION_ID_TAG: execution_id}), limit=1)
    return records[0] if records else None


def node_records(instance: dg.DagsterInstance, run_id: str) -> dict[str, NodeRecord]:
    """The nodes of a run that have a video, from its asset materializations."""
    nodes: dict[str, NodeRecord] = {}
    result = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000)
    for record in result.records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or "node_id" not in materialization.metadata:
            continue
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        node_id = str(metadata["node_id"])
        nodes[node_id] = NodeRecord(
            node_id=node_id,
            operation=str(metadata["operation"]),
            status=str(metadata["status"]),
            lineage=str(metadata["lineage"]),
            result=VideoResult.from_wire(metadata["result"]),  # type: ignore[arg-type]
            reused_from=str(metadata["reused_from"]) if metadata.get("reused_from") else None,
            metadata=metadata,
        )
    return nodes


def plan_of_run(run: dg.DagsterRun) -> dict[str, Any]:
    """The plan (wire form) a run of execute_plan was launched with."""
    ops: Any = run.run_config.get("ops", {})
    plan: dict[str, Any] = ops["plan"]["config"]
    return plan


def load_base(instance: dg.DagsterInstance, execution_id: str) -> BaseExecution:
    """The base execution's completed nodes; raises BaseNotReady or BaseUnusable."""
    record = find_run(instance, execution_id)
    if record is None:
        raise BaseUnusable(f"base execution {execution_id} does not exist")
    run = record.dagster_run
    if run.status in UNFINISHED:
        raise BaseNotReady(f"base execution {execution_id} is {run.status.value.lower()}")
    if run.status is not dg.DagsterRunStatus.SUCCESS:
        state = "canceled" if run.status is dg.DagsterRunStatus.CANCELED else "failed"
        raise BaseUnusable(f"base execution {execution_id} {state} (run {run.run_id}); submit against a completed base")
    base_plan = parse_plan(plan_of_run(run), external_nodes=None)
    records = node_records(instance, run.run_id)
    nodes = {
        node_id: BaseNode(
            node_id=node_id,
            operation=record.operation,
            lineage=record.lineage,
            result=record.result,
            params=normalised_node_params(base_plan.node(node_id)) if node_id in base_plan.by_id else None,
        )
        for node_id, record in records.items()
    }
    final = sinks(base_plan)[-1].id
    if final not in nodes:
        raise BaseUnusable(f"base execution {execution_id} has no result for its final node {final}")
    return BaseExecution(execution_id=execution_id, nodes=nodes, final_node_id=final)
