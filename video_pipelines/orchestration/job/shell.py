"""The Dagster side of a node's work (`nodes.work.RunShell`): records, slots, spans and tags of its run."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import dagster as dg

from video_pipelines.executions.records import EXECUTION_ID_TAG
from video_pipelines.executions.spending import check_spend_cap
from video_pipelines.nodes.head_start import HeadStarts, Log
from video_pipelines.nodes.ledger import RunTagLedger
from video_pipelines.nodes.parking import park
from video_pipelines.nodes.tasks import NodeTask
from video_pipelines.nodes.work import RanSpan, RunNodes
from video_pipelines.orchestration.job.state import step_key
from video_pipelines.orchestration.job.traces import node_span
from video_pipelines.orchestration.resources.provider_slots import DagsterProviderSlots
from video_pipelines.orchestration.run_records import DagsterRunRecords, run_view
from video_pipelines.plan.params import AnyParams
from video_pipelines.providers.http import Parked
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import SubmissionStore


class DagsterRunShell:
    def __init__(self, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
        self._instance = instance
        self._run = run
        self._view = run_view(run)  # its plan is parsed once, by the first paid node that checks its spend

    @property
    def run_id(self) -> str:
        return self._run.run_id

    def check_spend(self, task: NodeTask, params: AnyParams | None, pricing: PricingTable) -> None:
        records = DagsterRunRecords(self._instance)
        check_spend_cap(
            records, self._view, task.node, params=params, inputs=task.inputs, upstream=task.upstream, pricing=pricing
        )

    def slots(self, node_id: str, log: Log) -> DagsterProviderSlots:
        return DagsterProviderSlots(self._instance, self._run, step_key=step_key(node_id), log=log)

    def span(self, task: NodeTask, attempt: int) -> AbstractContextManager[RanSpan]:
        return node_span(self._run, task, attempt=attempt)

    def ledger(self, node_id: str, lock: threading.Lock) -> RunTagLedger:
        return RunTagLedger(self._instance, self._run.run_id, node_id, lock)

    def park(self, task: NodeTask, parked: Parked, store: SubmissionStore, lock: threading.Lock) -> None:
        park(self._instance, store, self._run.run_id, task, parked, lock)

    def run_has_ended(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    def plan_caches(self) -> bool:
        return self._view.plan.get("cache", True) is not False


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
