"""The status of an execution (SPEC section 4, `video-pipelines status`), from Dagster's records.

A submission that has not been launched answers from the submission store; once it has a
run, everything comes from the run: its status, step stats, failures and the nodes' asset
materializations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.execution.stats import StepEventStatus

from video_pipelines.errors import ExecutionNotFound
from video_pipelines.orchestration.executions import find_run, node_records, plan_of_run
from video_pipelines.orchestration.state import mapping_key
from video_pipelines.plan import parse_plan, sinks
from video_pipelines.submissions import Submission, SubmissionState, SubmissionStore

TERMINAL = ("completed", "failed", "canceled")

_RUN_STATUS = {
    dg.DagsterRunStatus.QUEUED: "pending",
    dg.DagsterRunStatus.NOT_STARTED: "pending",
    dg.DagsterRunStatus.STARTING: "pending",
    dg.DagsterRunStatus.STARTED: "processing",
    dg.DagsterRunStatus.CANCELING: "processing",
    dg.DagsterRunStatus.SUCCESS: "completed",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "canceled",
}


def execution_status(instance: dg.DagsterInstance, store: SubmissionStore | None, execution_id: str) -> dict[str, Any]:
    """The status document of an execution."""
    submission = store.get(execution_id) if store is not None else None
    record = find_run(instance, execution_id)
    if record is None:
        if submission is None:
            raise ExecutionNotFound(f"no execution {execution_id}")
        return _submission_status(submission)
    return _run_status(instance, execution_id, record.dagster_run)


def _submission_status(submission: Submission) -> dict[str, Any]:
    status = {
        SubmissionState.PENDING: "pending",
        SubmissionState.LAUNCHED: "pending",
        SubmissionState.REJECTED: "failed",
        SubmissionState.CANCELED: "canceled",
    }[submission.state]
    node_ids = [str(job.get("id")) for job in submission.plan.get("jobs", [])]
    node_status = "pending" if status == "pending" else "skipped"
    return _document(
        execution_id=submission.execution_id,
        status=status,
        jobs={node_id: _job(node_status) for node_id in node_ids},
        result=None,
        error=submission.error,
        run_id=submission.run_id,
    )


def _run_status(instance: dg.DagsterInstance, execution_id: str, run: dg.DagsterRun) -> dict[str, Any]:
    plan = parse_plan(plan_of_run(run), external_nodes=None)
    records = node_records(instance, run.run_id)
    step_status = _node_step_status(instance, run.run_id, [node.id for node in plan.nodes])
    status = _RUN_STATUS.get(run.status, "processing")
    jobs: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        record = records.get(node.id)
        if record is not None:
            cost = 0.0 if record.status == "reused" else float(record.metadata.get("cost_usd", 0.0))
            jobs[node.id] = _job(record.status, record.result.to_wire(), record.reused_from, cost)
        elif step_status.get(node.id) == "running" and status == "processing":
            jobs[node.id] = _job("running")
        elif step_status.get(node.id) == "failed":
            jobs[node.id] = _job("failed")
        else:
            jobs[node.id] = _job("skipped" if status in TERMINAL else "pending")
    final = sinks(plan)[-1].id
    result = jobs[final]["result"] if status == "completed" else None
    error = None
    if status == "failed":
        error = _failure_message(instance, run.run_id)
    elif status == "canceled":
        error = "the execution was canceled"
    return _document(execution_id=execution_id, status=status, jobs=jobs, result=result, error=error, run_id=run.run_id)


def _job(
    status: str, result: dict[str, Any] | None = None, reused_from: str | None = None, cost: float = 0.0
) -> dict[str, Any]:
    # Cost in USD of the provider work this node did in this execution (a reused node costs nothing).
    return {"status": status, "result": result, "reusedFrom": reused_from, "cost": round(cost, 4)}


def _document(
    *,
    execution_id: str,
    status: str,
    jobs: Mapping[str, dict[str, Any]],
    result: dict[str, Any] | None,
    error: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    total = len(jobs)
    done = sum(1 for job in jobs.values() if job["status"] in ("completed", "reused"))
    reused = sum(1 for job in jobs.values() if job["status"] == "reused")
    running = [node_id for node_id, job in jobs.items() if job["status"] == "running"]
    progress = 100 if status == "completed" else (100 * done // total if total else 0)
    return {
        "executionId": execution_id,
        "status": status,
        "progress": progress,
        "totalJobs": total,
        "completedJobs": done,
        "reusedJobs": reused,
        "currentJob": running[0] if running else None,
        "result": result,
        "error": error,
        "runId": run_id,
        "cost": round(sum(job["cost"] for job in jobs.values()), 4),
        "jobs": dict(jobs),
    }


def _node_step_status(instance: dg.DagsterInstance, run_id: str, node_ids: list[str]) -> dict[str, str]:
    """running / failed per node, from the run's step stats (step keys are `level_<k>[<mapping key>]`)."""
    by_key = {mapping_key(node_id): node_id for node_id in node_ids}
    statuses: dict[str, str] = {}
    for stats in instance.get_run_step_stats(run_id):
        if "[" not in stats.step_key:
            continue
        node_id = by_key.get(stats.step_key.split("[", 1)[1].rstrip("]"))
        if node_id is None:
            continue
        if stats.status is None or stats.status == StepEventStatus.IN_PROGRESS:
            statuses[node_id] = "running"
        elif stats.status == StepEventStatus.FAILURE:
            statuses[node_id] = "failed"
    return statuses


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """What failed, readably: the failed steps' descriptions, else the run failure's message."""
    messages = []
    failures = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=20).records
    for record in failures:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and user.description:
            messages.append(user.description)
        elif data.error is not None:
            messages.append(data.error.message.strip())
    if messages:
        return "; ".join(messages)
    run_failures = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1).records
    if run_failures and run_failures[0].event_log_entry.message:
        return run_failures[0].event_log_entry.message
    return "the run failed"
