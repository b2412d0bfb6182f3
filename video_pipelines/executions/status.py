"""The status of an execution: a typed document (`to_wire()`: the JSON of the CLI and HTTP API).

Before launch it answers from the submission store, after from the runs (every run's node results
count, the newest's steps and state). A run canceled after every node got its video is `completed`
(a cancel racing the end changes nothing made). One run monitoring ended at its deadline is `failed`
whether Dagster ended it failed or canceled (the monitor cancels, then fails; the worker may report
canceled first). While a lost run waits for its resume, or a retry for its run, it is never failed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from video_pipelines.errors import ExecutionError, ExecutionNotFound
from video_pipelines.executions.attempts import (
    ExecutionRuns,
    cancel_requested,
    deadline_exceeded,
    lost_worker,
    lost_worker_error,
    may_resume,
    pending_attempt,
    plan_timeout,
    resume_canceled,
    resumes_left,
)
from video_pipelines.executions.records import (
    ATTEMPT_REASON_TAG,
    PARKED_END_TAG,
    TRACEPARENT_TAG,
    WORKER_TAG,
    CheckRecords,
    NodeCheck,
    RunRecords,
    RunState,
    RunView,
)
from video_pipelines.executions.spending import saved_usd
from video_pipelines.plan import sinks
from video_pipelines.plan.results import VideoResult
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import ProviderWaits, Submission, SubmissionState, SubmissionStore
from video_pipelines.telemetry.trace_context import execution_context
from video_pipelines.vocabulary import ExecutionState, NodeState

CANCELED_ERROR = "the execution was canceled"
# Where the Dagster UI is (`video-pipelines dev` sets it): the status document links the run's page there.
UI_URL_ENV = "VIDEO_PIPELINES_UI_URL"


@dataclass(frozen=True)
class ProviderJob:
    """The provider job a waiting node is parked on, and since when."""

    provider: str
    id: str
    since: datetime

    def to_wire(self) -> dict[str, str]:
        return {"provider": self.provider, "id": self.id, "since": self.since.astimezone(UTC).isoformat()}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> ProviderJob:
        return cls(str(wire["provider"]), str(wire["id"]), datetime.fromisoformat(str(wire["since"])))


@dataclass(frozen=True)
class NodeStatus:
    state: NodeState
    result: VideoResult | None = None
    reused_from: str | None = None
    cost_usd: float = 0.0  # what the provider work of this node cost in this execution; reused nodes cost 0
    checks: tuple[NodeCheck, ...] = ()  # the media checks of its video, from the run of this execution that made it
    provider_job: ProviderJob | None = None  # what a waiting node waits on

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "status": self.state.value,
            "result": self.result.to_wire() if self.result is not None else None,
            "reusedFrom": self.reused_from,
            "cost": round(self.cost_usd, 4),
            "checks": [check.to_wire() for check in self.checks],
        }
        return wire if self.provider_job is None else {**wire, "providerJob": self.provider_job.to_wire()}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> NodeStatus:
        result, job = wire.get("result"), wire.get("providerJob")
        return cls(
            state=NodeState(wire["status"]),
            result=VideoResult.from_wire(result) if result else None,
            reused_from=wire.get("reusedFrom"),
            cost_usd=float(wire.get("cost") or 0.0),
            checks=tuple(NodeCheck.from_wire(check) for check in wire.get("checks") or ()),
            provider_job=ProviderJob.from_wire(job) if job else None,
        )


@dataclass(frozen=True)
class AttemptStatus:
    """One run of an execution in the status document's `attempts`."""

    attempt: int
    run_id: str
    state: ExecutionState  # what that run ended as, or is
    reason: str | None = None  # resume | retry; None for the first run and runs re-executed from the UI

    def to_wire(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "runId": self.run_id, "status": self.state.value, "reason": self.reason}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> AttemptStatus:
        return cls(int(wire["attempt"]), str(wire["runId"]), ExecutionState(wire["status"]), wire.get("reason"))


@dataclass(frozen=True)
class ExecutionStatus:
    """The status of an execution, node by node, in plan order."""

    execution_id: str
    state: ExecutionState
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)
    result: VideoResult | None = None  # the final video, once completed
    error: str | None = None
    run_id: str | None = None
    trace_id: str | None = None  # the execution's trace, 32 hex digits
    worker: str | None = None  # the run worker process that took the run, when a Celery worker did
    saved_usd: float = 0.0  # what reuse saved at list prices
    attempts: tuple[AttemptStatus, ...] = ()  # every run of the execution, oldest first

    @property
    def attempt(self) -> int:
        """The number of the execution's newest run (0 before it has one)."""
        return len(self.attempts)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def total_jobs(self) -> int:
        return len(self.nodes)

    @property
    def completed_jobs(self) -> int:
        return sum(1 for node in self.nodes.values() if node.state.has_result)

    @property
    def reused_jobs(self) -> int:
        return sum(1 for node in self.nodes.values() if node.state is NodeState.REUSED)

    @property
    def current_job(self) -> str | None:
        return next((node_id for node_id, node in self.nodes.items() if node.state is NodeState.RUNNING), None)

    @property
    def progress(self) -> int:
        if self.state is ExecutionState.COMPLETED:
            return 100
        return 100 * self.completed_jobs // self.total_jobs if self.total_jobs else 0

    @property
    def cost_usd(self) -> float:
        return round(sum(round(node.cost_usd, 4) for node in self.nodes.values()), 4)

    @property
    def ui_url(self) -> str | None:
        """The run's page in the Dagster UI at $VIDEO_PIPELINES_UI_URL, once there is a run and the UI is known."""
        base = os.environ.get(UI_URL_ENV, "").strip().rstrip("/")
        return f"{base}/runs/{self.run_id}" if base and self.run_id else None

    def to_wire(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "status": self.state.value,
            "progress": self.progress,
            "totalJobs": self.total_jobs,
            "completedJobs": self.completed_jobs,
            "reusedJobs": self.reused_jobs,
            "currentJob": self.current_job,
            "result": self.result.to_wire() if self.result is not None else None,
            "error": self.error,
            "runId": self.run_id,
            **({"uiUrl": ui_url} if (ui_url := self.ui_url) else {}),
            "cost": self.cost_usd,
            "savedUsd": round(self.saved_usd, 4),
            "traceId": self.trace_id,
            "worker": self.worker,
            "attempt": self.attempt,
            "attempts": [attempt.to_wire() for attempt in self.attempts],
            "jobs": {node_id: node.to_wire() for node_id, node in self.nodes.items()},
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> ExecutionStatus:
        """The typed status of a status document (as the HTTP API sends it); raises ExecutionError if it is not one."""
        try:
            result = wire.get("result")
            return cls(
                execution_id=str(wire["executionId"]),
                state=ExecutionState(wire["status"]),
                nodes={node_id: NodeStatus.from_wire(node) for node_id, node in (wire.get("jobs") or {}).items()},
                result=VideoResult.from_wire(result) if result else None,
                error=wire.get("error"),
                run_id=wire.get("runId"),
                trace_id=wire.get("traceId"),
                worker=wire.get("worker"),
                saved_usd=float(wire.get("savedUsd") or 0.0),
                attempts=tuple(AttemptStatus.from_wire(attempt) for attempt in wire.get("attempts") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ExecutionError(f"not a status document: {type(exc).__name__}: {exc}") from None


def execution_status(records: RunRecords, store: SubmissionStore | None, execution_id: str) -> ExecutionStatus:
    """The status of an execution; raises ExecutionNotFound when neither a run nor a submission has it."""
    run = records.find_run(execution_id)
    if run is not None:
        return run_status(records, run, store=store)
    submission = store.get(execution_id) if store is not None else None
    if submission is None:
        raise ExecutionNotFound(f"no execution {execution_id}")
    return submission_status(submission)


_SUBMISSION_STATE = {
    SubmissionState.PENDING: ExecutionState.PENDING,
    SubmissionState.LAUNCHING: ExecutionState.PENDING,
    SubmissionState.LAUNCHED: ExecutionState.PENDING,
    SubmissionState.REJECTED: ExecutionState.FAILED,
    SubmissionState.CANCELED: ExecutionState.CANCELED,
}


def submission_status(submission: Submission) -> ExecutionStatus:
    """The status of a submission that has no run yet (pending, rejected or canceled before launch)."""
    state = _SUBMISSION_STATE[submission.state]
    node_state = NodeState.PENDING if state is ExecutionState.PENDING else NodeState.SKIPPED
    node_ids = [str(job.get("id")) for job in submission.plan.get("jobs", [])]
    return ExecutionStatus(
        execution_id=submission.execution_id,
        state=state,
        nodes={node_id: NodeStatus(node_state) for node_id in node_ids},
        error=submission.error,
        run_id=submission.run_id,
        trace_id=execution_context(submission.traceparent, submission.execution_id).trace_id_hex,
    )


def run_status(
    records: RunRecords, run: RunView, pricing: PricingTable | None = None, store: SubmissionStore | None = None
) -> ExecutionStatus:
    """The status of an execution from its runs; with `store`, a retry not launched yet makes it pending."""
    plan = run.parsed_plan
    runs = ExecutionRuns.of(records, run)
    recorded = runs.node_records(records)
    node_ids = [node.id for node in plan.nodes]
    steps = records.node_steps(run.run_id, node_ids)
    ended = _RunEnd.of(records, run, runs, store, all(node_id in recorded for node_id in node_ids))
    state, lost = ended.state, ended.lost
    waiting = _waiting_jobs(run, store) if state is ExecutionState.PROCESSING and run.waits_on_providers else {}
    checks: dict[str, list[NodeCheck]] = {}
    if isinstance(records, CheckRecords):
        for earlier in runs.runs:  # a node carried from an earlier run was checked there; a later check wins
            checks.update(records.node_checks(earlier.run_id))
    nodes: dict[str, NodeStatus] = {}
    for node_id in node_ids:
        record = recorded.get(node_id)
        step = steps.get(node_id)
        node_checks = tuple(checks.get(node_id, ()))
        if record is not None:
            cost = 0.0 if record.state is NodeState.REUSED else record.cost_usd
            nodes[node_id] = NodeStatus(record.state, record.result, record.reused_from, cost, node_checks)
        elif node_id in waiting:
            nodes[node_id] = NodeStatus(NodeState.WAITING, provider_job=waiting[node_id])
        elif step is NodeState.RUNNING and state is ExecutionState.PROCESSING and lost is None:
            nodes[node_id] = NodeStatus(NodeState.RUNNING)
        elif step is NodeState.FAILED or (step is NodeState.RUNNING and lost is not None and state.is_terminal):
            nodes[node_id] = NodeStatus(NodeState.FAILED, checks=node_checks)
        else:
            nodes[node_id] = NodeStatus(NodeState.SKIPPED if state.is_terminal else NodeState.PENDING)
    final = nodes[sinks(plan)[-1].id]
    reused = any(record.state is NodeState.REUSED for record in recorded.values())
    return ExecutionStatus(
        execution_id=run.execution_id,
        state=state,
        nodes=nodes,
        result=final.result if state is ExecutionState.COMPLETED else None,
        error=ended.error(records, run, runs, node_ids, steps),
        run_id=run.run_id,
        trace_id=execution_context(run.tags.get(TRACEPARENT_TAG), run.execution_id).trace_id_hex,
        worker=run.tags.get(WORKER_TAG),
        # The pricing file is read only when a node was reused.
        saved_usd=saved_usd(plan, recorded, pricing or PricingTable.from_env()) if reused else 0.0,
        attempts=tuple(
            AttemptStatus(number, each.run_id, each.state.execution_state, each.tags.get(ATTEMPT_REASON_TAG))
            for number, each in enumerate(runs.runs, start=1)
        ),
    )


# How a run that parked may end: its own end, or a late cancel request taken after it (see `_RunEnd._parked`).
_PARKED_ENDS = (RunState.SUCCESS, RunState.CANCELING, RunState.CANCELED)


def _waiting_jobs(run: RunView, store: SubmissionStore | None) -> dict[str, ProviderJob]:
    """The provider jobs `run`'s parked nodes wait on, since when they wait (the store knows; else the run's end)."""
    waits = {wait.node_id: wait for wait in ProviderWaits(store).of_execution(run.execution_id)} if store else {}
    ended = datetime.fromtimestamp(run.ended_at or 0.0, UTC)
    jobs = {}
    for node_id, label in run.parked.items():
        provider, _, job_id = label.partition(" ")
        wait = waits.get(node_id)
        jobs[node_id] = ProviderJob(provider, job_id, wait.since if wait is not None else ended)
    return jobs


@dataclass(frozen=True)
class _RunEnd:
    """The execution's state from its newest run, and what ended it: its deadline, or a lost worker."""

    state: ExecutionState
    deadline: int | None = None
    lost: str | None = None  # how the run's worker was lost, when that is why it ended
    parked_on: tuple[str, ...] = ()  # "<node> (waiting on <provider> <job>)" when its deadline passed while parked

    @classmethod
    def of(
        cls, records: RunRecords, run: RunView, runs: ExecutionRuns, store: SubmissionStore | None, all_made: bool
    ) -> _RunEnd:
        state = run.state.execution_state
        if run.parked and not all_made and run.state in _PARKED_ENDS:
            return cls._parked(run, store)
        if run.state in (RunState.CANCELING, RunState.CANCELED) and all_made:
            # Every node has its video: the cancel came too late (the run was ending, or had ended and a
            # terminate raced its end). The execution completed, whatever Dagster made of the run.
            state = ExecutionState.COMPLETED
        ended = state.is_terminal and state is not ExecutionState.COMPLETED
        deadline = deadline_exceeded(records, run) if ended else None  # a run with every video made beat its deadline
        lost = lost_worker(records, run) if deadline is None else None
        if deadline is not None:
            state = ExecutionState.FAILED
        elif lost is not None and may_resume(runs):  # `lost` already is the run's cause: read its events once
            # Its resume is on its way, unless a user canceled the execution while it waited.
            state = ExecutionState.CANCELED if resume_canceled(store, runs) else ExecutionState.PROCESSING
        if state.is_terminal and pending_attempt(store, run) is not None:
            state = ExecutionState.PENDING  # retried: its next run is on its way
        return cls(state, deadline, lost)

    @classmethod
    def _parked(cls, run: RunView, store: SubmissionStore | None) -> _RunEnd:
        """A run that ended parked: its execution waits on providers, unless a cancel or its deadline ended it
        (a cancel that came as the run parked is one too: `provider_waits` cancels its jobs)."""
        end = run.tags.get(PARKED_END_TAG)
        # A terminate that raced the run's end leaves it CANCELING (Dagster takes the late request) until run
        # monitoring's cancel timeout: the cancel is what counts.
        canceled = run.state is not RunState.SUCCESS or (store is not None and cancel_requested(store, run))
        if end is None and not canceled:
            return cls(ExecutionState.PROCESSING)
        if end != "deadline":
            return cls(ExecutionState.CANCELED)
        waited = tuple(f"{node_id} (waiting on {label})" for node_id, label in run.parked.items())
        return cls(ExecutionState.FAILED, deadline=plan_timeout(run) or 0, parked_on=waited)

    def error(
        self, records: RunRecords, run: RunView, runs: ExecutionRuns, ids: list[str], steps: Mapping[str, NodeState]
    ) -> str | None:
        if self.deadline is not None:
            unfinished = [node_id for node_id in ids if steps.get(node_id) in (NodeState.RUNNING, NodeState.FAILED)]
            # A resumed run's tag held what was left of the deadline.
            error = f"deadline exceeded after {plan_timeout(run) or self.deadline} s (timeoutSeconds)"
            if self.parked_on:  # its provider jobs were stopped when it ended
                return f"{error}; unfinished: {', '.join(self.parked_on)}"
            return error + (f"; unfinished: {', '.join(unfinished)}" if unfinished else "")
        if self.state is ExecutionState.FAILED and self.lost is not None:
            # With resumes left, the deadline is why it was not resumed.
            out_of_time = plan_timeout(run) if resumes_left(runs) else None
            running = [node_id for node_id in ids if steps.get(node_id) is NodeState.RUNNING]
            return lost_worker_error(self.lost, running, runs.resumes_in_a_row(), deadline=out_of_time)
        if self.state is ExecutionState.FAILED:
            return records.failure_message(run.run_id)
        return CANCELED_ERROR if self.state is ExecutionState.CANCELED else None
