"""How a node's step finds its inputs' videos: in memory, in the run's (and re-executed runs') records, or by waiting.

Why waiting cannot deadlock: `plan` yields nodes in topological order and Dagster's executors start
executable steps first in, first out (`ActiveExecution.get_steps_to_execute`), so a step waits only on
steps started before it. Hence retries happen inside the step: Dagster's `RetryRequested` would requeue
it behind the steps waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dagster as dg
from dagster._check import is_dict

from video_pipelines.nodes.tasks import PlannedNode
from video_pipelines.orchestration.job.state import step_key
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan.results import VideoResult
from video_pipelines.providers.http import sleep_interruptibly

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
                found[str(node_id)] = VideoResult.from_wire(is_dict(metadata["result"].value))
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
