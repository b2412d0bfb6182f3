"""What the execution life cycle reads from the orchestrator, as a small protocol (`orchestration/` answers
it over a DagsterInstance, tests from memory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from video_pipelines.nodes.ledger import PARKED_TAG_PREFIX as PARKED_TAG_PREFIX
from video_pipelines.nodes.ledger import PROVIDER_JOB_TAG_PREFIX as PROVIDER_JOB_TAG_PREFIX
from video_pipelines.plan.model import Plan, parse_plan
from video_pipelines.plan.results import VideoResult
from video_pipelines.vocabulary import ExecutionState, NodeState, WireRecord

EXECUTION_ID_TAG = "video/execution_id"
# The tenant of a submitted execution's runs: the run queue's per-tenant limit counts it.
TENANT_TAG = "video/tenant"
BASE_EXECUTION_ID_TAG = "video/base_execution_id"
# The plan's name where its door knows one (`demo`: the example's): the runs list shows it beside the launcher.
PLAN_NAME_TAG = "video/plan"
# The W3C traceparent of the execution's span, on runs launched from a submission (see telemetry.trace_context).
# Under Dagster's hidden prefix: the UI's runs list and run page leave it out (GraphQL skips `.dagster/` tags).
TRACEPARENT_TAG = ".dagster/video/traceparent"
# Dagster's own tag for a run's deadline in seconds: run monitoring ends a run that runs longer.
MAX_RUNTIME_TAG = "dagster/max_runtime"
# Dagster's own tag on a re-execution (launched from the UI): the run it re-executes.
REEXECUTION_PARENT_TAG = "dagster/parent_run_id"


def deadline_tags(timeout_seconds: int | None) -> dict[str, str]:
    """The run tags that give a run its plan's `timeoutSeconds` (none without one)."""
    return {} if timeout_seconds is None else {MAX_RUNTIME_TAG: str(timeout_seconds)}


# The worker process that ran the run ("<celery node> pid <N>"), set by a Celery run worker as it starts it.
WORKER_TAG = "video/worker"
# Which attempt at its execution a run is (absent: 1, the first run), and the run it follows.
ATTEMPT_TAG = "video/attempt"
ATTEMPT_REASON_TAG = "video/attempt_reason"  # resume | retry | continue
PREVIOUS_RUN_TAG = "video/previous_run_id"
# How a parked run's execution ended without a continuation: "canceled", or "deadline" (timeoutSeconds passed).
PARKED_END_TAG = "video/parked_end"
# Why a run's worker counts as lost ("<worker> is gone: ..."), set by the run launcher that found it dead.
LOST_WORKER_TAG = "video/lost_worker"


class RunState(StrEnum):
    """Where a run of `execute_plan` is in its life (the orchestrator's run status, lower-cased)."""

    QUEUED = "queued"
    NOT_STARTED = "not_started"
    MANAGED = "managed"  # run by something outside the orchestrator's launcher
    STARTING = "starting"
    STARTED = "started"
    SUSPENDED = "suspended"
    CANCELING = "canceling"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"

    @property
    def is_finished(self) -> bool:
        return self in (RunState.SUCCESS, RunState.FAILURE, RunState.CANCELED)

    @property
    def execution_state(self) -> ExecutionState:
        """The execution's status while its run is in this state."""
        return _EXECUTION_STATE[self]


_EXECUTION_STATE = {
    **dict.fromkeys((RunState.QUEUED, RunState.NOT_STARTED, RunState.STARTING), ExecutionState.PENDING),
    **dict.fromkeys(
        (RunState.MANAGED, RunState.STARTED, RunState.SUSPENDED, RunState.CANCELING), ExecutionState.PROCESSING
    ),
    RunState.SUCCESS: ExecutionState.COMPLETED,
    RunState.FAILURE: ExecutionState.FAILED,
    RunState.CANCELED: ExecutionState.CANCELED,
}


@dataclass(frozen=True)
class RunView:
    """One run of an execution: its id, state, the plan it was launched with and its tags."""

    run_id: str
    execution_id: str
    state: RunState
    plan: Mapping[str, Any]  # wire form, as in the run config (never a webhook secret)
    tags: Mapping[str, str] = field(default_factory=dict)
    # When it started and ended (epoch seconds; None: not yet, or not read with the run).
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def attempt(self) -> int:
        value = self.tags.get(ATTEMPT_TAG, "1")
        return int(value) if value.isdigit() and int(value) >= 1 else 1

    @property
    def parked(self) -> dict[str, str]:
        """The nodes this run parked on provider jobs: node id -> "<provider> <job id>"."""
        prefix = PARKED_TAG_PREFIX
        return {key.removeprefix(prefix): value for key, value in self.tags.items() if key.startswith(prefix)}

    @property
    def waits_on_providers(self) -> bool:
        """Ended parked, and not ended since by a cancel or its deadline: its execution waits for a continuation."""
        return self.state is RunState.SUCCESS and bool(self.parked) and PARKED_END_TAG not in self.tags

    @cached_property
    def parsed_plan(self) -> Plan:
        """`plan`, parsed once for this view (its base's nodes were resolved when it was admitted)."""
        return parse_plan(self.plan, external_nodes=None)


@dataclass(frozen=True)
class NodeRecord:
    """One node's recorded video in a run (a completed or reused node)."""

    node_id: str
    operation: str
    state: NodeState  # completed | reused
    lineage: str
    result: VideoResult
    reused_from: str | None = None
    cost_usd: float = 0.0
    run_id: str | None = None  # the run that recorded it


@dataclass(frozen=True)
class NodeCheck(WireRecord):
    """One media check of a node's video, as its run recorded it (see `operations.checks`)."""

    name: str
    passed: bool
    blocking: bool
    message: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> NodeCheck:
        return cls(str(wire["name"]), bool(wire["passed"]), bool(wire["blocking"]), str(wire["message"]))


@runtime_checkable
class CheckRecords(Protocol):
    """Records that also hold the media checks of a run's nodes."""

    def node_checks(self, run_id: str) -> dict[str, list[NodeCheck]]:
        """The media checks each node computed in the run was given, in the order they ran."""


class RunRecords(Protocol):
    """The orchestrator's records of `execute_plan` runs, as the execution life cycle reads them."""

    def find_run(self, execution_id: str) -> RunView | None:
        """The newest run of an execution, or None when it has none."""

    def execution_runs(self, execution_id: str) -> list[RunView]:
        """Every run of an execution (its attempts, and re-executions launched from the UI), oldest first."""

    def lost_worker(self, run: RunView) -> str | None:
        """How the run's worker process was lost (killed, gone), when that is why it failed; else None."""

    def node_records(self, run_id: str) -> dict[str, NodeRecord]:
        """The nodes of a run that have a video."""

    def node_steps(self, run_id: str, node_ids: Sequence[str]) -> dict[str, NodeState]:
        """RUNNING or FAILED for the nodes whose step is in progress or failed; others are left out."""

    def failure_message(self, run_id: str) -> str:
        """What failed in a failed run, readably (the failed nodes' errors, else the run's)."""

    def node_errors(self, run_id: str, node_ids: Sequence[str]) -> dict[str, str]:
        """The error of each of these nodes whose step failed; others are left out."""

    def run_messages(self, run_id: str) -> list[str]:
        """The messages of the run's own canceling, failure and canceled events, oldest first."""

    def ended_since(self, since: datetime, limit: int) -> list[RunView]:
        """Runs of `execute_plan` that ended (or were updated after ending) since `since`."""

    def queued_runs(self) -> int:
        """How many runs of `execute_plan` wait in the orchestrator's run queue now (for metrics)."""

    def terminate(self, run_id: str) -> None:
        """Cancel a queued run or terminate a running one."""

    def add_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Tag an ended run (how its parked execution ended)."""

    def cancel_unbegun(self, run_id: str) -> bool:
        """Cancel a run whose launch still waits in a broker (CANCELED at once); True when it was canceled."""
