"""The execution life cycle (`video_pipelines.executions`) on in-memory run records and a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from video_pipelines import executions
from video_pipelines.errors import ExecutionConflict, ExecutionNotFound, PlanValidationError
from video_pipelines.executions import (
    BaseReadiness,
    EndedRunScan,
    ExecutionStatus,
    NodeRecord,
    RunState,
    admit,
    execution_status,
)
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import AttemptState, AttemptStore, SubmissionStore
from video_pipelines.vocabulary import ExecutionState, NodeState
from video_pipelines.webhooks import DeliveryOutbox

from ..memory_records import MemoryRunRecords, video

BASE_PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "a", "type": "generateVideo", "params": {"prompt": "one", "duration": 2}},
        {"id": "b", "type": "generateVideo", "params": {"prompt": "two", "duration": 2}},
        {"id": "m", "type": "merge", "params": {}, "dependsOn": ["a", "b"]},
    ]
}


def completed_base(records: MemoryRunRecords, execution_id: str = "exec_base") -> None:
    lineage = admit(BASE_PLAN).resolved
    assert lineage is not None
    nodes = [
        NodeRecord(node_id, operation, NodeState.COMPLETED, lineage.lineage[node_id], video(node_id))
        for node_id, operation in (("a", "generateVideo"), ("b", "generateVideo"), ("m", "merge"))
    ]
    records.add_run(execution_id, BASE_PLAN, RunState.SUCCESS, nodes=nodes)


def variant(**extra: Any) -> dict[str, Any]:
    jobs = [*BASE_PLAN["jobs"], {"id": "r", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["m"]}]
    return {"jobs": jobs, "baseExecutionId": "exec_base", **extra}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SubmissionStore]:
    with SubmissionStore(f"sqlite:///{tmp_path / 'submissions.db'}", secret_key=Fernet.generate_key()) as opened:
        yield opened


# --- admit


def test_a_plan_without_base_is_resolved_to_run_every_node(records: MemoryRunRecords) -> None:
    admission = admit(BASE_PLAN, records)
    assert admission.base.readiness is BaseReadiness.NONE
    assert admission.resolved is not None
    assert [node.id for node in admission.resolved.to_run] == ["a", "b", "m"]


def test_without_records_the_base_is_not_looked_up() -> None:
    admission = admit(variant())
    assert admission.base.readiness is BaseReadiness.UNCHECKED and admission.resolved is None


def test_a_variant_of_a_completed_base_reuses_its_nodes(records: MemoryRunRecords) -> None:
    completed_base(records)
    admission = admit(variant(), records)
    assert admission.base.readiness is BaseReadiness.READY
    assert admission.resolved is not None
    assert [decision.node_id for decision in admission.resolved.reused] == ["a", "b", "m"]
    assert [node.id for node in admission.resolved.to_run] == ["r"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (RunState.STARTED, "base execution exec_base is started"),
        (RunState.QUEUED, "base execution exec_base is queued"),
    ],
)
def test_a_base_still_running_waits(records: MemoryRunRecords, state: RunState, reason: str) -> None:
    records.add_run("exec_base", BASE_PLAN, state)
    admission = admit(variant(), records)
    assert (admission.base.readiness, admission.base.reason, admission.resolved) == (
        BaseReadiness.WAITING,
        reason,
        None,
    )


@pytest.mark.parametrize(("state", "word"), [(RunState.FAILURE, "failed"), (RunState.CANCELED, "canceled")])
def test_a_base_that_failed_or_was_canceled_is_refused(records: MemoryRunRecords, state: RunState, word: str) -> None:
    records.add_run("exec_base", BASE_PLAN, state)
    with pytest.raises(PlanValidationError) as refused:
        admit(variant(), records)
    assert refused.value.problems == [
        f"plan.baseExecutionId: base execution exec_base {word} (run run-exec_base); submit against a completed base"
    ]


def refusal(wire: dict[str, Any], records: MemoryRunRecords, store: SubmissionStore | None = None) -> list[str]:
    with pytest.raises(PlanValidationError) as refused:
        admit(wire, records, store)
    return refused.value.problems


def test_a_base_still_only_submitted_waits_and_a_rejected_or_missing_one_is_refused(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    base, _ = store.submit(BASE_PLAN)
    admission = admit(variant(baseExecutionId=base.execution_id), records, store)
    assert admission.base.readiness is BaseReadiness.WAITING
    assert admission.base.reason == f"base execution {base.execution_id} is pending"
    store.mark_rejected(base.execution_id, "invalid plan: x")
    assert refusal(variant(baseExecutionId=base.execution_id), records, store) == [
        f"plan.baseExecutionId: base execution {base.execution_id} was rejected: invalid plan: x"
    ]
    assert refusal(variant(baseExecutionId="exec_ghost"), records, store) == [
        "plan.baseExecutionId: base execution exec_ghost does not exist"
    ]


def test_a_completed_base_without_its_final_node_is_refused(records: MemoryRunRecords) -> None:
    records.add_run("exec_base", BASE_PLAN, RunState.SUCCESS)
    assert refusal(variant(), records) == [
        "plan.baseExecutionId: base execution exec_base has no result for its final node m"
    ]


def test_a_dependency_the_base_lacks_is_a_plan_error(records: MemoryRunRecords) -> None:
    completed_base(records)
    plan = {"jobs": [{"id": "s", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["ghost"]}]}
    with pytest.raises(PlanValidationError, match="ghost"):
        admit({**plan, "baseExecutionId": "exec_base"}, records)


def test_a_deep_plan_is_admitted(records: MemoryRunRecords) -> None:
    """execute_plan runs any plan's nodes as a pool: no limit on the longest dependency chain (it was 12 levels)."""
    jobs = [{"id": "n0", "type": "generateVideo", "params": {"prompt": "x"}}]
    for level in range(1, 40):
        jobs.append(
            {"id": f"n{level}", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": [f"n{level - 1}"]}
        )
    resolved = admit({"jobs": jobs}, records).resolved
    assert resolved is not None and len(resolved.to_run) == 40


# --- status


def test_status_of_a_pending_submission(records: MemoryRunRecords, store: SubmissionStore) -> None:
    submission, _ = store.submit(BASE_PLAN)
    status = execution_status(records, store, submission.execution_id)
    assert status.state is ExecutionState.PENDING
    assert {node.state for node in status.nodes.values()} == {NodeState.PENDING}
    assert status.to_wire()["totalJobs"] == 3 and status.run_id is None


def test_status_of_a_running_execution_names_its_current_job(records: MemoryRunRecords) -> None:
    run = records.add_run("exec_1", BASE_PLAN, RunState.STARTED, nodes=[_completed("a", cost=0.25)])
    records.steps[run.run_id] = {"b": NodeState.RUNNING}
    wire = execution_status(records, None, "exec_1").to_wire()
    assert (wire["status"], wire["currentJob"], wire["completedJobs"], wire["progress"]) == ("processing", "b", 1, 33)
    assert wire["jobs"]["m"] == {"status": "pending", "result": None, "reusedFrom": None, "cost": 0.0, "checks": []}
    assert wire["jobs"]["a"]["cost"] == 0.25 and wire["cost"] == 0.25


def test_status_of_a_completed_execution_has_its_final_video_and_costs(records: MemoryRunRecords) -> None:
    nodes = [
        _completed("a", cost=0.1),
        NodeRecord("b", "generateVideo", NodeState.REUSED, "l", video("b"), reused_from="exec_0", cost_usd=0.5),
        _completed("m"),
    ]
    records.add_run("exec_1", BASE_PLAN, RunState.SUCCESS, nodes=nodes)
    status = execution_status(records, None, "exec_1")
    wire = status.to_wire()
    assert wire["status"] == "completed" and wire["progress"] == 100
    assert wire["result"] == video("m").to_wire()
    assert (wire["reusedJobs"], wire["jobs"]["b"]["reusedFrom"], wire["jobs"]["b"]["cost"]) == (1, "exec_0", 0.0)
    assert wire["cost"] == 0.1
    assert ExecutionStatus.from_wire(json.loads(json.dumps(wire))) == status


def test_status_of_a_failed_execution_says_what_failed(records: MemoryRunRecords) -> None:
    run = records.add_run("exec_1", BASE_PLAN, RunState.FAILURE, nodes=[_completed("a")])
    records.steps[run.run_id] = {"b": NodeState.FAILED}
    records.failures[run.run_id] = "b (generateVideo) failed: boom"
    wire = execution_status(records, None, "exec_1").to_wire()
    assert (wire["status"], wire["error"], wire["result"]) == ("failed", "b (generateVideo) failed: boom", None)
    assert [wire["jobs"][n]["status"] for n in ("a", "b", "m")] == ["completed", "failed", "skipped"]


def test_status_of_an_unknown_execution(records: MemoryRunRecords, store: SubmissionStore) -> None:
    with pytest.raises(ExecutionNotFound, match="no execution exec_nope"):
        execution_status(records, store, "exec_nope")


# --- cancel and webhooks


def test_cancel_a_pending_submission_enqueues_its_canceled_webhook(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    submission, _ = store.submit(
        BASE_PLAN, SubmitOptions(webhook_url="https://hooks.example.com/x", webhook_secret="s3cr3t")
    )
    status = executions.cancel(records, store, submission.execution_id)
    assert status.state is ExecutionState.CANCELED and records.terminated == []
    [delivery] = DeliveryOutbox(store).deliveries(submission.execution_id)
    assert (delivery.event, delivery.url) == ("canceled", "https://hooks.example.com/x")
    body = json.loads(delivery.body)
    assert body["status"] == "canceled" and "s3cr3t" not in delivery.body.decode()
    assert executions.secret_lookup(store)(delivery) == "s3cr3t"


def test_cancel_a_running_execution_terminates_its_run(records: MemoryRunRecords, store: SubmissionStore) -> None:
    records.add_run("exec_1", BASE_PLAN, RunState.STARTED)
    executions.cancel(records, store, "exec_1")
    assert records.terminated == ["run-exec_1"]


DEADLINE_TAGS = {"dagster/max_runtime": "10"}


@pytest.mark.parametrize("ended", [RunState.FAILURE, RunState.CANCELED])
def test_a_run_its_deadline_ended_is_failed_with_the_deadline_whichever_way_dagster_ended_it(
    records: MemoryRunRecords, store: SubmissionStore, ended: RunState
) -> None:
    hooked = {**BASE_PLAN, "timeoutSeconds": 10, "webhook": {"url": "https://hooks.example.com/d"}}
    run = records.add_run("exec_1", hooked, ended, nodes=[_completed("a")], tags=DEADLINE_TAGS)
    records.steps[run.run_id] = {"b": NodeState.RUNNING}
    # What Dagster's run monitoring writes (dagster/_daemon/monitoring/run_monitoring.py).
    records.messages[run.run_id] = ["Canceling due to exceeding maximum runtime of 10 seconds."]
    if ended is RunState.FAILURE:
        records.messages[run.run_id].append("Exceeded maximum runtime of 10 seconds.")
    records.failures[run.run_id] = "b (generateVideo) canceled: the run is ending, so the run fails"
    status = execution_status(records, store, "exec_1")
    assert status.state is ExecutionState.FAILED
    assert status.error == "deadline exceeded after 10 s (timeoutSeconds); unfinished: b"
    delivery = executions.enqueue_webhook(records, store, DeliveryOutbox(store), "exec_1")
    assert delivery is not None and delivery.event == "failed"
    body = json.loads(delivery.body)
    assert body["status"] == "failed" and body["error"].startswith("deadline exceeded after 10 s")


def test_a_user_cancel_of_a_run_with_a_deadline_stays_canceled(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    run = records.add_run("exec_1", {**BASE_PLAN, "timeoutSeconds": 10}, RunState.CANCELED, tags=DEADLINE_TAGS)
    records.messages[run.run_id] = ["Sending run termination request."]
    status = execution_status(records, store, "exec_1")
    assert status.state is ExecutionState.CANCELED and status.error == "the execution was canceled"


def test_a_direct_run_with_secret_env_is_signed_from_that_variable(
    records: MemoryRunRecords, store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked = {**BASE_PLAN, "webhook": {"url": "https://hooks.example.com/d", "secretEnv": "HOOK_SECRET"}}
    records.add_run("exec_1", hooked, RunState.SUCCESS, nodes=[_completed("a"), _completed("b"), _completed("m")])
    target = executions.webhook_target(records, store, "exec_1")
    assert target == executions.WebhookTarget("https://hooks.example.com/d", "env:HOOK_SECRET")
    delivery = executions.enqueue_webhook(records, store, DeliveryOutbox(store), "exec_1")
    assert delivery is not None and json.loads(delivery.body)["video"]["url"] == video("m").url
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    assert executions.secret_lookup(store)(delivery) == "from-env"


def test_the_ended_run_scan_enqueues_each_webhook_once_and_survives_its_cursor(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    hooked = {**BASE_PLAN, "webhook": {"url": "https://hooks.example.com/s"}}
    records.add_run("exec_1", hooked, RunState.FAILURE)
    records.add_run("exec_2", BASE_PLAN, RunState.SUCCESS, nodes=[_completed("m")])  # no webhook
    outbox = DeliveryOutbox(store)
    scan = EndedRunScan()
    assert executions.enqueue_recently_ended(records, store, outbox, scan) == 1
    assert set(scan.handled) == {"run-exec_1", "run-exec_2"}
    resumed = EndedRunScan.from_json(json.loads(json.dumps(scan.to_json())))
    assert resumed == scan
    assert executions.enqueue_recently_ended(records, store, outbox, resumed) == 0
    assert [d.event for d in outbox.deliveries("exec_1")] == ["failed"]
    report = executions.delivery_report(store, "exec_1")
    assert report[0]["event"] == "failed" and report[0]["attempts"] == []


def test_the_scan_forgets_runs_handled_long_ago(records: MemoryRunRecords, store: SubmissionStore) -> None:
    old = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    scan = EndedRunScan(last_checked=old, handled={"run-old": old})
    executions.enqueue_recently_ended(records, store, DeliveryOutbox(store), scan)
    assert scan.handled == {} and scan.last_checked is not None and scan.last_checked > old


# --- validation report


def test_the_validation_report_prices_what_would_run(records: MemoryRunRecords) -> None:
    completed_base(records)
    plan = variant()
    plan["jobs"].append(
        {
            "id": "v",
            "type": "lipSync",
            "params": {"audioUrl": "https://x/a.mp3", "provider": "replicate"},
            "dependsOn": ["r"],
        }
    )
    report = executions.validation_report(admit(plan, records), PricingTable.from_env({}))
    actions = {node["id"]: (node["action"], node["estimatedCost"]) for node in report["nodes"]}
    assert actions["a"] == ("reuse", 0.0) and actions["r"] == ("run", 0.0)
    # 4 s of merged video (two 2 s clips, cut) lip-synced with kling-lip-sync at the default $0.014/s
    assert actions["v"] == ("run", 0.056)
    assert report["estimatedCost"] == 0.056 and report["baseNote"] is None


def _completed(node_id: str, *, cost: float = 0.0) -> NodeRecord:
    operation = "merge" if node_id == "m" else "generateVideo"
    return NodeRecord(node_id, operation, NodeState.COMPLETED, f"lineage-{node_id}", video(node_id), cost_usd=cost)


def test_a_cancel_of_a_finished_execution_records_no_request_and_a_retry_still_runs_it(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    """A request on a finished run would outlive it: a resume or retry of the execution would take it as live."""
    submission, _ = store.submit(BASE_PLAN)
    assert store.claim(submission.execution_id)
    run = records.add_run(submission.execution_id, BASE_PLAN, RunState.FAILURE)
    assert store.mark_launched(submission.execution_id, run.run_id)
    with pytest.raises(ExecutionConflict, match="is failed; only a pending or processing execution can be canceled"):
        executions.cancel(records, store, submission.execution_id)
    assert records.terminated == []
    launched = store.get(submission.execution_id)
    assert launched is not None and launched.cancel_requested_at is None
    assert executions.retry(records, store, submission.execution_id).state is ExecutionState.PENDING
    [attempt] = [a for a in AttemptStore(store).of_execution(submission.execution_id) if a.number == 2]
    assert attempt.state is AttemptState.PENDING and attempt.cancel_requested_at is None


def test_a_cancel_while_the_run_is_asked_for_or_running_is_recorded(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    asked, _ = store.submit(BASE_PLAN)
    assert store.claim(asked.execution_id)  # LAUNCHING: its run does not exist yet and must obey the request
    executions.cancel(records, store, asked.execution_id)
    running, _ = store.submit(BASE_PLAN)
    assert store.claim(running.execution_id)
    run = records.add_run(running.execution_id, BASE_PLAN, RunState.STARTED)
    assert store.mark_launched(running.execution_id, run.run_id)
    executions.cancel(records, store, running.execution_id)
    for execution_id in (asked.execution_id, running.execution_id):
        submission = store.get(execution_id)
        assert submission is not None and submission.cancel_requested_at is not None
