"""An execution's attempts (`executions.attempts`): resumes, retries, carried nodes, status and webhooks.

The application layer on in-memory run records (`MemoryRunRecords`, with `lost` for runs
whose worker died) and a real submission store on SQLite (tests/postgres: on PostgreSQL too).
The job and sensor layer is in `dagster/test_retry.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from video_pipelines import executions
from video_pipelines.errors import ExecutionError, ExecutionNotFound, UsageError
from video_pipelines.executions import NodeRecord, RunState, RunView, admit, execution_status
from video_pipelines.executions.attempts import (
    MAX_RESUMES_ENV,
    ExecutionRuns,
    attempt_run_tags,
    carry_completed,
    max_resumes,
    request_resume,
    resume_cause,
)
from video_pipelines.executions.lifecycle import request_retry
from video_pipelines.executions.records import ATTEMPT_REASON_TAG, ATTEMPT_TAG, MAX_RUNTIME_TAG, PREVIOUS_RUN_TAG
from video_pipelines.executions.status import AttemptStatus, ExecutionStatus
from video_pipelines.plan.reuse import Action, ResolvedPlan
from video_pipelines.submissions import AttemptReason, AttemptState, AttemptStore, ExecutionOutcomes, SubmissionStore
from video_pipelines.vocabulary import ExecutionState, NodeState
from video_pipelines.webhooks import DeliveryOutbox

from ..memory_records import MemoryRunRecords, video

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 2}},
        {"id": "voice", "type": "lipSync", "params": {"audioUrl": "https://cdn.example.com/v.mp3"},
         "dependsOn": ["gen"]},
    ]
}  # fmt: skip
HOOKED: dict[str, Any] = {**PLAN, "webhook": {"url": "https://hooks.example.com/attempts"}}
KILLED = "the run worker process was terminated by signal 9 (SIGKILL)"


def resolved(plan: dict[str, Any] = PLAN) -> ResolvedPlan:
    admission = admit(plan)
    assert admission.resolved is not None
    return admission.resolved


def completed(node_id: str, run_id: str, *, cost: float = 0.0, name: str | None = None) -> NodeRecord:
    """`node_id` of PLAN as a run computed it, with the lineage PLAN gives it."""
    operation = "generateVideo" if node_id == "gen" else "lipSync"
    lineage = resolved().lineage[node_id]
    return NodeRecord(
        node_id, operation, NodeState.COMPLETED, lineage, video(name or node_id), cost_usd=cost, run_id=run_id
    )


def attempt_tags(number: int, reason: AttemptReason, previous: str) -> dict[str, str]:
    return {ATTEMPT_TAG: str(number), ATTEMPT_REASON_TAG: reason.value, PREVIOUS_RUN_TAG: previous}


@pytest.fixture(autouse=True)
def default_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_RESUMES_ENV, raising=False)


def lost_run(
    records: MemoryRunRecords,
    run_id: str,
    *,
    tags: dict[str, str] | None = None,
    plan: dict[str, Any] = PLAN,
    started_at: float | None = None,
    ended_at: float | None = None,
) -> RunView:
    """A run of exec_1 that failed because its worker died while `voice` was running, after `gen` completed."""
    run = records.add_run(
        "exec_1",
        plan,
        RunState.FAILURE,
        run_id=run_id,
        nodes=[completed("gen", run_id, cost=0.25)],
        tags=tags,
        started_at=started_at,
        ended_at=ended_at,
    )
    records.steps[run_id] = {"voice": NodeState.RUNNING}
    records.lost[run_id] = KILLED
    return run


# --- which runs are resumed


def test_a_lost_worker_is_resumable_and_a_plain_failure_is_not(records: MemoryRunRecords) -> None:
    lost = lost_run(records, "run-lost")
    assert resume_cause(records, ExecutionRuns.of(records, lost)) == KILLED
    failed = records.add_run("exec_2", PLAN, RunState.FAILURE, run_id="run-failed")
    records.failures["run-failed"] = "voice (lipSync) failed: HTTP 404"
    assert resume_cause(records, ExecutionRuns.of(records, failed)) is None
    canceled = records.add_run("exec_3", PLAN, RunState.CANCELED, run_id="run-canceled")
    records.lost["run-canceled"] = KILLED  # only a failed run counts as lost
    assert resume_cause(records, ExecutionRuns.of(records, canceled)) is None


def test_a_run_its_deadline_ended_is_not_resumed_even_if_its_worker_went_too(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    """Run monitoring ended it past `timeoutSeconds`: resuming would give the execution a new clock."""
    run = lost_run(records, "run-1", tags={MAX_RUNTIME_TAG: "30"})
    records.messages["run-1"] = [
        "Canceling due to exceeding maximum runtime of 30 seconds.",
        "Exceeded maximum runtime of 30 seconds.",
    ]
    assert request_resume(records, sqlite_store, run) is None
    assert AttemptStore(sqlite_store).of_execution("exec_1") == []
    status = execution_status(records, sqlite_store, "exec_1")
    assert status.state is ExecutionState.FAILED
    assert status.error == "deadline exceeded after 30 s (timeoutSeconds); unfinished: voice"


def test_a_resume_has_what_was_left_of_the_deadline_and_a_retry_all_of_it_again(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    """`dagster/max_runtime` counts from each run's start: a resume must not give the attempt a new clock."""
    plan = {**PLAN, "timeoutSeconds": 600}
    now = time.time()
    first = lost_run(records, "run-1", plan=plan, tags={MAX_RUNTIME_TAG: "600"}, started_at=now - 100, ended_at=now)
    attempt = request_resume(records, sqlite_store, first)
    assert attempt is not None
    tags = attempt_run_tags(attempt, first, {}, ExecutionRuns.of(records, first))
    assert 499 <= int(tags[MAX_RUNTIME_TAG]) <= 501  # 600 s less the 100 s the lost run had used
    # Lost again: the clock still runs from the first run's start, not the resume's.
    second = lost_run(
        records, "run-2", plan=plan, tags={**attempt_tags(2, AttemptReason.RESUME, "run-1"), MAX_RUNTIME_TAG: "500"},
        started_at=now - 40, ended_at=now,
    )  # fmt: skip
    resume = request_resume(records, sqlite_store, second)
    assert resume is not None
    again = attempt_run_tags(resume, second, {}, ExecutionRuns.of(records, second))
    assert 499 <= int(again[MAX_RUNTIME_TAG]) <= 501
    # A retry is a new attempt: the whole deadline, whatever the run before it had left.
    records.lost.pop("run-2")
    retry = AttemptStore(sqlite_store).request("exec_1", 4, AttemptReason.RETRY, previous_run_id="run-2")[0]
    assert attempt_run_tags(retry, second, {}, ExecutionRuns.of(records, second))[MAX_RUNTIME_TAG] == "600"


def test_a_lost_run_with_too_little_of_its_deadline_left_is_not_resumed(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    plan = {**PLAN, "timeoutSeconds": 60}
    now = time.time()
    run = lost_run(records, "run-1", plan=plan, tags={MAX_RUNTIME_TAG: "60"}, started_at=now - 58, ended_at=now)
    assert request_resume(records, sqlite_store, run) is None
    status = execution_status(records, sqlite_store, "exec_1")
    assert status.state is ExecutionState.FAILED
    assert status.error == (
        f"run worker lost while running node voice: {KILLED} (not resumed: too little of its 60 s deadline "
        "(timeoutSeconds) was left)"
    )
    # With time left it would have been: the status says processing, its resume on the way.
    records.runs[-1] = replace(run, started_at=now - 10)
    assert execution_status(records, sqlite_store, "exec_1").state is ExecutionState.PROCESSING


def test_resumes_in_a_row_are_bounded_and_a_retry_starts_the_count_again(
    records: MemoryRunRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = lost_run(records, "run-1")
    assert max_resumes() == 2
    assert resume_cause(records, ExecutionRuns.of(records, first)) == KILLED
    second = lost_run(records, "run-2", tags=attempt_tags(2, AttemptReason.RESUME, "run-1"))
    assert resume_cause(records, ExecutionRuns.of(records, second)) == KILLED  # 1 resume so far
    third = lost_run(records, "run-3", tags=attempt_tags(3, AttemptReason.RESUME, "run-2"))
    assert ExecutionRuns.of(records, third).resumes_in_a_row() == 2
    assert resume_cause(records, ExecutionRuns.of(records, third)) is None  # 2 resumes: none left
    monkeypatch.setenv(MAX_RESUMES_ENV, "3")
    assert resume_cause(records, ExecutionRuns.of(records, third)) == KILLED
    monkeypatch.delenv(MAX_RESUMES_ENV)
    # A user's retry is not a resume: its run may be resumed again.
    fourth = lost_run(records, "run-4", tags=attempt_tags(4, AttemptReason.RETRY, "run-3"))
    assert resume_cause(records, ExecutionRuns.of(records, fourth)) == KILLED


def test_max_resumes_0_never_resumes_and_a_bad_value_is_refused(
    records: MemoryRunRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lost_run(records, "run-1")
    monkeypatch.setenv(MAX_RESUMES_ENV, "0")
    assert resume_cause(records, ExecutionRuns.of(records, run)) is None
    monkeypatch.setenv(MAX_RESUMES_ENV, "two")
    with pytest.raises(UsageError, match=f"{MAX_RESUMES_ENV} must be a whole number >= 0"):
        max_resumes()


def test_request_resume_is_idempotent_and_none_once_a_later_run_exists(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    """On SQLite and PostgreSQL: the attempt's primary key makes a second request the same attempt."""
    run = lost_run(records, "run-1")
    attempt = request_resume(records, store, run)
    assert attempt is not None
    assert (attempt.number, attempt.reason, attempt.previous_run_id, attempt.state) == (
        2, AttemptReason.RESUME, "run-1", AttemptState.PENDING
    )  # fmt: skip
    assert request_resume(records, store, run) == attempt
    assert AttemptStore(store).of_execution("exec_1") == [attempt]

    lost_run(records, "run-2", tags=attempt_tags(2, AttemptReason.RESUME, "run-1"))
    assert request_resume(records, store, run) is None  # run-1 was resumed already
    plain = records.add_run("exec_2", PLAN, RunState.FAILURE, run_id="run-plain")
    assert request_resume(records, store, plain) is None
    assert AttemptStore(store).of_execution("exec_2") == []


# --- status across runs


def test_a_lost_run_waiting_for_its_resume_is_processing_without_an_error(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    run = lost_run(records, "run-1")
    request_resume(records, sqlite_store, run)
    status = execution_status(records, sqlite_store, "exec_1")
    assert (status.state, status.error) == (ExecutionState.PROCESSING, None)
    assert status.nodes["gen"].state is NodeState.COMPLETED
    assert status.nodes["voice"].state is NodeState.PENDING  # it runs again in the resume
    assert not status.is_terminal and status.progress == 50


@pytest.mark.parametrize("resume_recorded", [True, False])
def test_a_cancel_while_a_lost_run_waits_for_its_resume_ends_it_canceled(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, resume_recorded: bool
) -> None:
    """Whether the resume sensor recorded the resume before the user's cancel or not, nothing is launched."""
    run = lost_run(records, "run-1")
    if resume_recorded:
        request_resume(records, sqlite_store, run)
    status = executions.cancel(records, sqlite_store, "exec_1")
    assert (status.state, status.error) == (ExecutionState.CANCELED, "the execution was canceled")
    assert request_resume(records, sqlite_store, run).state is AttemptState.CANCELED  # type: ignore[union-attr]
    assert AttemptStore(sqlite_store).pending() == []
    assert execution_status(records, sqlite_store, "exec_1").state is ExecutionState.CANCELED
    # The cancel ended it, so the cancel counted its end (no run-status sensor will: no run ended).
    assert ExecutionOutcomes(sqlite_store).tally().finished == {"canceled": 1}


def test_a_run_whose_worker_dies_as_a_cancel_stops_it_is_not_resumed(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    submission, _ = sqlite_store.submit(PLAN)
    execution_id = submission.execution_id
    running = records.add_run(execution_id, PLAN, RunState.STARTED, run_id="run-1")
    assert sqlite_store.mark_launched(execution_id, "run-1")
    status = executions.cancel(records, sqlite_store, execution_id)
    assert status.state is ExecutionState.PROCESSING and records.terminated == ["run-1"]
    # Its worker dies before the run ends canceled: the cancel still holds, nothing runs again.
    records.runs.remove(running)
    lost = records.add_run(execution_id, PLAN, RunState.FAILURE, run_id="run-1", nodes=[completed("gen", "run-1")])
    records.lost["run-1"] = KILLED
    assert request_resume(records, sqlite_store, lost) is None and AttemptStore(sqlite_store).pending() == []
    status = execution_status(records, sqlite_store, execution_id)
    assert (status.state, status.error) == (ExecutionState.CANCELED, "the execution was canceled")


def test_a_lost_run_with_no_resume_left_fails_naming_the_node_and_the_cause(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost_run(records, "run-1")
    monkeypatch.setenv(MAX_RESUMES_ENV, "0")
    status = execution_status(records, sqlite_store, "exec_1")
    assert status.state is ExecutionState.FAILED
    assert status.error == f"run worker lost while running node voice: {KILLED}"
    assert status.nodes["voice"].state is NodeState.FAILED

    monkeypatch.delenv(MAX_RESUMES_ENV)
    lost_run(records, "run-2", tags=attempt_tags(2, AttemptReason.RESUME, "run-1"))
    lost_run(records, "run-3", tags=attempt_tags(3, AttemptReason.RESUME, "run-2"))
    status = execution_status(records, sqlite_store, "exec_1")
    resumed = "(resumed 2 times before; no resume left)"
    assert status.error == f"run worker lost while running node voice: {KILLED} {resumed}"
    assert [(a.attempt, a.run_id, a.state, a.reason) for a in status.attempts] == [
        (1, "run-1", ExecutionState.FAILED, None),
        (2, "run-2", ExecutionState.FAILED, "resume"),
        (3, "run-3", ExecutionState.FAILED, "resume"),
    ]


def test_node_results_of_every_run_count_and_a_later_record_wins(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    records.add_run("exec_1", PLAN, RunState.FAILURE, run_id="run-1", nodes=[completed("gen", "run-1", cost=0.25)])
    records.steps["run-1"] = {"voice": NodeState.FAILED}
    failed = execution_status(records, sqlite_store, "exec_1")
    assert failed.state is ExecutionState.FAILED and failed.nodes["voice"].state is NodeState.FAILED

    # The retry carried gen (recorded again, same cost) and computed voice.
    carried = completed("gen", "run-2", cost=0.25, name="gen-again")
    nodes = [carried, completed("voice", "run-2", cost=0.5)]
    records.add_run(
        "exec_1", PLAN, RunState.SUCCESS, run_id="run-2", nodes=nodes,
        tags=attempt_tags(2, AttemptReason.RETRY, "run-1"),
    )  # fmt: skip
    status = execution_status(records, sqlite_store, "exec_1")
    assert (status.state, status.run_id, status.progress) == (ExecutionState.COMPLETED, "run-2", 100)
    assert status.error is None
    assert status.nodes["gen"].result == video("gen-again")  # the later run's record
    assert status.result == video("voice")
    assert status.cost_usd == 0.75  # gen is paid for once: its record in run-2 replaces run-1's
    assert status.attempt == 2
    assert status.attempts == (
        AttemptStatus(1, "run-1", ExecutionState.FAILED, None),
        AttemptStatus(2, "run-2", ExecutionState.COMPLETED, "retry"),
    )


def test_a_run_re_executed_from_failure_counts_the_nodes_of_the_run_before(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    """Re-executed from failure in the Dagster UI: gen's record lives in the first run only."""
    records.add_run("exec_1", PLAN, RunState.FAILURE, run_id="run-1", nodes=[completed("gen", "run-1")])
    records.add_run("exec_1", PLAN, RunState.SUCCESS, run_id="run-2", nodes=[completed("voice", "run-2")])
    status = execution_status(records, sqlite_store, "exec_1")
    assert status.state is ExecutionState.COMPLETED
    assert {node_id: node.state for node_id, node in status.nodes.items()} == {
        "gen": NodeState.COMPLETED, "voice": NodeState.COMPLETED
    }  # fmt: skip
    assert [(a.run_id, a.reason) for a in status.attempts] == [("run-1", None), ("run-2", None)]


def test_the_wire_form_keeps_the_attempts(records: MemoryRunRecords, sqlite_store: SubmissionStore) -> None:
    records.add_run("exec_1", PLAN, RunState.FAILURE, run_id="run-1", nodes=[completed("gen", "run-1", cost=0.25)])
    records.add_run(
        "exec_1", PLAN, RunState.SUCCESS, run_id="run-2", nodes=[completed("voice", "run-2", cost=0.5)],
        tags=attempt_tags(2, AttemptReason.RETRY, "run-1"),
    )  # fmt: skip
    status = execution_status(records, sqlite_store, "exec_1")
    wire = json.loads(json.dumps(status.to_wire()))
    assert wire["attempt"] == 2
    assert wire["attempts"] == [
        {"attempt": 1, "runId": "run-1", "status": "failed", "reason": None},
        {"attempt": 2, "runId": "run-2", "status": "completed", "reason": "retry"},
    ]
    again = ExecutionStatus.from_wire(wire)
    assert again.attempts == status.attempts and again.attempt == 2
    assert again == status
    assert again.to_wire() == wire


# --- retry


def test_a_completed_running_or_never_run_execution_cannot_be_retried(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    records.add_run("exec_done", PLAN, RunState.SUCCESS, run_id="run-done")
    with pytest.raises(
        ExecutionError, match="execution exec_done is completed; only a failed or canceled execution can be retried"
    ):
        request_retry(records, sqlite_store, "exec_done")
    records.add_run("exec_busy", PLAN, RunState.STARTED, run_id="run-busy")
    with pytest.raises(ExecutionError, match="execution exec_busy is processing; only a failed or canceled"):
        request_retry(records, sqlite_store, "exec_busy")
    # A lost run waiting for its resume is processing too: the resume will run it.
    lost_run(records, "run-lost")
    with pytest.raises(ExecutionError, match="execution exec_1 is processing"):
        request_retry(records, sqlite_store, "exec_1")

    pending = executions.submit(admit(PLAN), sqlite_store)
    with pytest.raises(ExecutionError, match=f"execution {pending} is pending and never ran.*submit its plan again"):
        request_retry(records, sqlite_store, pending)
    rejected = executions.submit(admit(PLAN), sqlite_store, idempotency_key="rejected")
    sqlite_store.mark_rejected(rejected, "base execution exec_ghost does not exist")
    with pytest.raises(ExecutionError, match=f"execution {rejected} is failed and never ran"):
        request_retry(records, sqlite_store, rejected)
    with pytest.raises(ExecutionNotFound, match="no execution exec_nope"):
        request_retry(records, sqlite_store, "exec_nope")
    assert AttemptStore(sqlite_store).pending() == []


@pytest.mark.parametrize("ended", [RunState.FAILURE, RunState.CANCELED])
def test_a_failed_or_canceled_execution_is_retried_once_while_pending(
    records: MemoryRunRecords, store: SubmissionStore, ended: RunState
) -> None:
    """On SQLite and PostgreSQL."""
    records.add_run("exec_1", PLAN, ended, run_id="run-1", nodes=[completed("gen", "run-1")])
    attempt = request_retry(records, store, "exec_1")
    assert (attempt.number, attempt.reason, attempt.previous_run_id, attempt.state, attempt.run_id) == (
        2, AttemptReason.RETRY, "run-1", AttemptState.PENDING, None
    )  # fmt: skip
    assert request_retry(records, store, "exec_1") == attempt  # asked again while pending: the same attempt
    assert AttemptStore(store).of_execution("exec_1") == [attempt]

    status = executions.retry(records, store, "exec_1")  # the door every client uses
    assert (status.state, status.error, status.run_id) == (ExecutionState.PENDING, None, "run-1")
    assert status.nodes["gen"].state is NodeState.COMPLETED
    assert [(a.attempt, a.run_id) for a in status.attempts] == [(1, "run-1")]  # attempt 2 has no run yet

    # Canceled before its run: the execution ends as its last run did.
    executions.cancel(records, store, "exec_1")
    assert AttemptStore(store).get("exec_1", 2).state is AttemptState.CANCELED  # type: ignore[union-attr]
    assert execution_status(records, store, "exec_1").state is ended.execution_state


# --- carried nodes


def test_a_node_an_earlier_run_completed_is_carried_with_its_run_and_cost() -> None:
    carried = carry_completed(resolved(), {"gen": completed("gen", "run-1", cost=0.25)})
    decision = carried.decisions["gen"]
    assert (decision.action, decision.carried_from_run, decision.cost_usd, decision.result) == (
        Action.REUSE, "run-1", 0.25, video("gen")
    )  # fmt: skip
    assert decision.reused_from is None  # computed by this execution, not reused from a base
    assert "completed by an earlier run of this execution (run-1)" in decision.reason
    assert [node.id for node in carried.to_run] == ["voice"]
    assert carried.run_levels() == {"voice": 0}


def test_a_node_whose_lineage_changed_is_not_carried() -> None:
    changed: dict[str, Any] = json.loads(json.dumps(PLAN))
    changed["jobs"][0]["params"]["prompt"] = "a wolf"
    earlier = {"gen": completed("gen", "run-1"), "voice": completed("voice", "run-1")}
    carried = carry_completed(resolved(changed), earlier)
    assert [node.id for node in carried.to_run] == ["gen", "voice"]  # voice's lineage follows gen's
    assert all(decision.carried_from_run is None for decision in carried.decisions.values())


# --- webhooks


def test_a_lost_run_that_will_be_resumed_sends_no_end_webhook(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = DeliveryOutbox(sqlite_store)
    run = lost_run(records, "run-1", plan=HOOKED)
    request_resume(records, sqlite_store, run)
    assert executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1") is None
    assert outbox.deliveries("exec_1") == []

    # With no resume left it is the execution's end, and says what was lost.
    monkeypatch.setenv(MAX_RESUMES_ENV, "0")
    AttemptStore(sqlite_store).cancel_pending("exec_1")
    end = executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1")
    assert end is not None and (end.webhook_id, end.event) == ("msg_exec_1_failed", "failed")
    assert json.loads(end.body)["error"] == f"run worker lost while running node voice: {KILLED}"


def test_a_retried_execution_that_fails_again_gets_a_second_end_webhook(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(sqlite_store)
    records.add_run("exec_1", HOOKED, RunState.FAILURE, run_id="run-1", nodes=[completed("gen", "run-1")])
    records.failures["run-1"] = "voice (lipSync) failed after 4 attempts: HTTP 503"
    first = executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1")
    assert first is not None and first.webhook_id == "msg_exec_1_failed"

    attempt = request_retry(records, sqlite_store, "exec_1")
    assert executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1") is None  # pending: not ended
    records.add_run(
        "exec_1", HOOKED, RunState.FAILURE, run_id="run-2", nodes=[completed("gen", "run-2")],
        tags=attempt_tags(2, AttemptReason.RETRY, "run-1"),
    )  # fmt: skip
    AttemptStore(sqlite_store).mark_launched("exec_1", attempt.number, "run-2")
    records.failures["run-2"] = "voice (lipSync) failed after 4 attempts: HTTP 503 again"
    second = executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1")
    assert second is not None
    assert (second.webhook_id, second.event, second.attempt) == ("msg_exec_1_attempt2_failed", "failed", 2)
    assert json.loads(second.body)["error"] == "voice (lipSync) failed after 4 attempts: HTTP 503 again"
    assert [d.webhook_id for d in outbox.deliveries("exec_1")] == ["msg_exec_1_failed", "msg_exec_1_attempt2_failed"]
    assert outbox.get("msg_exec_1_failed") == first  # the first end stays as it was
    assert executions.enqueue_webhook(records, sqlite_store, outbox, "exec_1") == second  # idempotent
