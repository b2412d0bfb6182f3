"""`RunRecords` over a `DagsterInstance`; node results come from the run's asset materializations."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import dagster as dg
from dagster._check import is_dict
from dagster._core.event_api import EventLogCursor
from dagster._core.events import EngineEventData, JobFailureData
from dagster._core.execution.stats import StepEventStatus

from video_pipelines.executions import EXECUTION_ID_TAG, NodeRecord, RunState, RunView
from video_pipelines.executions.logs import LogLine, RunLogLine, level_name
from video_pipelines.executions.records import LOST_WORKER_TAG, NodeCheck
from video_pipelines.orchestration.job.config import EXAMPLE_PLAN
from video_pipelines.orchestration.job.state import step_key
from video_pipelines.plan.results import VideoResult
from video_pipelines.vocabulary import NodeState

JOB_NAME = "execute_plan"
_ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
_RUNNING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# Dagster's code server's words for a run process that died (dagster/_grpc/server.py `_check_for_orphaned_runs`).
_CRASHED_PROCESS = re.compile(
    r"^(?:\[\w+\] )?Run execution process for \S+ "
    r"(was terminated by signal \d+ \(\w+\)|unexpectedly exited with code -?\d+)"
)

# libpq's words for a database gone (restart, failover): the step failed for the infrastructure, not its work.
_DATABASE_GONE = re.compile(
    r"terminating connection due to administrator command|server closed the connection unexpectedly"
    r"|the database system is (?:shutting down|starting up|in recovery mode)|connection refused"
    r"|could not connect to server|connection to server at .* failed|SSL connection has been closed unexpectedly",
    re.IGNORECASE,
)


def _lost_database(error: Any) -> bool:
    while error is not None:
        if error.cls_name == "OperationalError" and _DATABASE_GONE.search(error.message or ""):
            return True
        error = error.cause or error.context
    return False


def plan_of_run(run: dg.DagsterRun) -> dict[str, Any]:
    """The plan a run was launched with; with no plan config, the job's default (Dagster stores config as given)."""
    ops: Any = run.run_config.get("ops") or {}
    config: dict[str, Any] | None = (ops.get("plan") or {}).get("config")
    return dict(EXAMPLE_PLAN) if config is None else config


def _log_message(entry: dg.EventLogEntry) -> str:
    """An event's message; a failed step's with its error (the event says only that the step failed)."""
    event = entry.dagster_event
    if event is None or not event.is_step_failure:
        return entry.message
    data = event.step_failure_data
    user = data.user_failure_data
    cause = user.description if user is not None and user.description else data.error.message if data.error else ""
    return f"{entry.message} {cause.strip()}".strip()


def run_view(run: dg.DagsterRun, record: dg.RunRecord | None = None) -> RunView:
    return RunView(
        run_id=run.run_id,
        execution_id=run.tags.get(EXECUTION_ID_TAG, run.run_id),
        state=RunState(run.status.value.lower()),
        plan=plan_of_run(run),
        tags=dict(run.tags),
        started_at=record.start_time if record is not None else None,
        ended_at=record.end_time if record is not None else None,
    )


@runtime_checkable
class CancelsQueued(Protocol):
    """A run launcher that can cancel a run no worker took yet (`VideoCeleryRunLauncher`; named by what it does,
    so reading a run's records never imports Celery)."""

    def cancel_queued(self, run_id: str) -> bool: ...


class DagsterRunRecords:
    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def _events(
        self, run_id: str, kind: dg.DagsterEventType | set[dg.DagsterEventType], limit: int, ascending: bool = True
    ) -> Sequence[dg.EventLogRecord]:
        return self.instance.get_records_for_run(run_id, of_type=kind, limit=limit, ascending=ascending).records

    def find_run(self, execution_id: str) -> RunView | None:
        records = self.instance.get_run_records(filters=dg.RunsFilter(tags={EXECUTION_ID_TAG: execution_id}), limit=1)
        return run_view(records[0].dagster_run, records[0]) if records else None

    def execution_runs(self, execution_id: str) -> list[RunView]:
        return self.runs_of_executions([execution_id]).get(execution_id, [])

    def runs_of_executions(self, execution_ids: Sequence[str]) -> dict[str, list[RunView]]:
        if not execution_ids:
            return {}
        filters = dg.RunsFilter(tags={EXECUTION_ID_TAG: list(execution_ids)})
        runs: dict[str, list[RunView]] = {}
        for record in reversed(self.instance.get_run_records(filters=filters)):
            view = run_view(record.dagster_run, record)
            runs.setdefault(view.execution_id, []).append(view)
        return runs

    def lost_worker(self, run: RunView) -> str | None:
        if run.state is not RunState.FAILURE:
            return None
        if run.tags.get(LOST_WORKER_TAG):
            return run.tags[LOST_WORKER_TAG]
        for record in self._events(run.run_id, dg.DagsterEventType.ENGINE_EVENT, 200, ascending=False):
            match = _CRASHED_PROCESS.match(record.event_log_entry.message or "")
            if match:
                return f"the run worker process {match.group(1).removesuffix('.')}"
        for record in self._events(run.run_id, dg.DagsterEventType.STEP_FAILURE, 200):
            event = record.event_log_entry.dagster_event
            if event is not None and _lost_database(event.step_failure_data.error):
                # Not libpq's words: they name the database's host, and tenants read this in their status.
                return f"the database connection was lost during step {event.step_key} (its event log has the error)"
        kinds = {dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
        for record in self._events(run.run_id, kinds, 200):
            event = record.event_log_entry.dagster_event
            data = event.event_specific_data if event is not None else None
            if isinstance(data, JobFailureData | EngineEventData) and _lost_database(data.error):
                # A run starting while the database restarts fails opening its resources, before any step.
                return "the database connection was lost as the run started (its event log has the error)"
        return None

    def node_records(self, run_id: str) -> dict[str, NodeRecord]:
        nodes: dict[str, NodeRecord] = {}
        for record in self._events(run_id, dg.DagsterEventType.ASSET_MATERIALIZATION, 10_000):
            materialization = record.event_log_entry.asset_materialization
            if materialization is None or "node_id" not in materialization.metadata:
                continue
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            node_id, cost = str(metadata["node_id"]), materialization.metadata.get("cost_usd")
            nodes[node_id] = NodeRecord(
                node_id=node_id,
                operation=str(metadata["operation"]),
                state=NodeState(str(metadata["status"])),
                lineage=str(metadata["lineage"]),
                result=VideoResult.from_wire(is_dict(metadata["result"])),
                reused_from=str(metadata["reused_from"]) if metadata.get("reused_from") else None,
                cost_usd=(cost.value or 0.0) if isinstance(cost, dg.FloatMetadataValue) else 0.0,
                run_id=run_id,
            )
        return nodes

    def run_log(self, run: RunView, after: int | None, limit: int) -> list[RunLogLine]:
        nodes = {step_key(node.id): node.id for node in run.parsed_plan.nodes}
        cursor = EventLogCursor.from_storage_id(after).to_string() if after is not None else None
        records = self.instance.get_records_for_run(run.run_id, cursor=cursor, limit=limit).records
        return [
            RunLogLine(
                record.storage_id,
                LogLine(
                    at=datetime.fromtimestamp(record.event_log_entry.timestamp, UTC),
                    level=level_name(int(record.event_log_entry.level)),
                    node=nodes.get(record.event_log_entry.step_key or ""),
                    message=_log_message(record.event_log_entry),
                ),
            )
            for record in records
        ]

    def node_checks(self, run_id: str) -> dict[str, list[NodeCheck]]:
        checks: dict[str, list[NodeCheck]] = {}
        for record in self._events(run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION, 10_000):
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            evaluation = event.asset_check_evaluation_data
            node_id = evaluation.metadata.get("node_id")
            if node_id is None:
                continue
            check = NodeCheck(
                name=evaluation.check_name,
                passed=evaluation.passed,
                blocking=bool(evaluation.blocking),
                message=evaluation.description or "",
            )
            # A retried step checks again: its evaluation replaces the earlier one of the same check.
            node_checks = [c for c in checks.get(str(node_id.value), []) if c.name != check.name]
            checks[str(node_id.value)] = [*node_checks, check]
        return checks

    def node_steps(self, run_id: str, node_ids: Sequence[str]) -> dict[str, NodeState]:
        by_step = {step_key(node_id): node_id for node_id in node_ids}
        states: dict[str, NodeState] = {}
        for stats in self.instance.get_run_step_stats(run_id):
            node_id = by_step.get(stats.step_key)
            if node_id is None:
                continue
            if stats.status is None or stats.status == StepEventStatus.IN_PROGRESS:
                states[node_id] = NodeState.RUNNING
            elif stats.status == StepEventStatus.FAILURE:
                states[node_id] = NodeState.FAILED
        return states

    def _step_failures(self, run_id: str) -> list[tuple[str, str]]:
        failures = []
        for record in self._events(run_id, dg.DagsterEventType.STEP_FAILURE, 20):
            event = record.event_log_entry.dagster_event
            if event is None or event.step_key is None:
                continue
            data = event.step_failure_data
            user = data.user_failure_data
            if user is not None and user.description:
                failures.append((event.step_key, user.description))
            elif data.error is not None:
                failures.append((event.step_key, data.error.message.strip()))
        return failures

    def node_errors(self, run_id: str, node_ids: Sequence[str]) -> dict[str, str]:
        by_step = {step_key(node_id): node_id for node_id in node_ids}
        return {by_step[key]: message for key, message in self._step_failures(run_id) if key in by_step}

    def failure_message(self, run_id: str) -> str:
        messages = [message for _step_key, message in self._step_failures(run_id)]
        if messages:
            return "; ".join(messages)
        run_failures = self._events(run_id, dg.DagsterEventType.RUN_FAILURE, 1)
        if run_failures and run_failures[0].event_log_entry.message:
            return run_failures[0].event_log_entry.message
        return "the run failed"

    def run_messages(self, run_id: str) -> list[str]:
        kinds = {dg.DagsterEventType.RUN_CANCELING, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}
        records = self._events(run_id, kinds, 20)
        return [record.event_log_entry.message for record in records if record.event_log_entry.message]

    def _runs(self, limit: int, **filters: Any) -> list[RunView]:
        records = self.instance.get_run_records(filters=dg.RunsFilter(job_name=JOB_NAME, **filters), limit=limit)
        return [run_view(record.dagster_run, record) for record in records]

    def in_progress(self, limit: int = 100) -> list[RunView]:
        return self._runs(limit, statuses=_RUNNING)

    def ended_since(self, since: datetime, limit: int) -> list[RunView]:
        return self._runs(limit, statuses=_ENDED, updated_after=since)

    def queued_runs(self) -> int:
        return self.instance.get_runs_count(dg.RunsFilter(job_name=JOB_NAME, statuses=[dg.DagsterRunStatus.QUEUED]))

    def queued(self, limit: int = 1000) -> list[RunView]:
        return self._runs(limit, statuses=[dg.DagsterRunStatus.QUEUED])

    def terminate(self, run_id: str) -> None:
        self.instance.run_coordinator.cancel_run(run_id)

    def add_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.instance.add_run_tags(run_id, tags)

    def cancel_unbegun(self, run_id: str) -> bool:
        # DefaultRunLauncher has no such cancel: terminating a run its process has not begun fails it.
        launcher = self.instance.run_launcher
        return isinstance(launcher, CancelsQueued) and launcher.cancel_queued(run_id)
