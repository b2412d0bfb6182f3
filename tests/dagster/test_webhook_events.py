"""Webhook events beyond the end (`webhook.events`) and redelivery.

Layers: the plan field; the outbox's node events, ids and redelivery on real databases (a
SQLite file and a fresh PostgreSQL database) with POSTs to a real receiver on 127.0.0.1; the
application layer on in-memory run records; and `execute_plan` run in process with the
Dagster sensors driven by hand, each webhook checked with the `standardwebhooks` library.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from video_pipelines import executions
from video_pipelines.doors import cli, client
from video_pipelines.errors import ExecutionNotFound, PlanValidationError, WebhookError
from video_pipelines.executions import EndedRunScan, NodeRecord, RunState, admit
from video_pipelines.net import AllowedHosts
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.sensors.plans import (
    poll_deliveries,
    submitted_plans,
    webhook_on_completed,
    webhook_on_failed,
    webhook_on_started,
)
from video_pipelines.plan import parse_plan
from video_pipelines.submissions import SubmissionStore, new_execution_id
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.vocabulary import ExecutionState, NodeState, WebhookEvent
from video_pipelines.webhooks import (
    RETRY_DELAYS_ENV,
    AttemptOutcome,
    Delivery,
    DeliveryOutbox,
    DeliveryState,
    RetrySchedule,
    deliver_due,
    encode_payload,
    execution_of_webhook,
    webhook_id_for,
)

from ..http_servers import serve_in_background, shut_down
from ..media import make_tone
from ..memory_records import MemoryRunRecords, video
from ..process_table import live_processes, wait_until_none
from ..receiver import ReceivedRequest, WebhookReceiver, running_receiver

SECRET = "whk-events-4e1b7d"
ALL_EVENTS = ["execution.started", "node.completed", "node.failed"]
NOW_RETRY = RetrySchedule(delays=(60.0, 60.0), jitter=0.0)
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
JOBS: list[dict[str, Any]] = [
    {"id": "a", "type": "generateVideo", "params": {"prompt": "one", "duration": 2}},
    {"id": "b", "type": "generateVideo", "params": {"prompt": "two", "duration": 2}},
    {"id": "m", "type": "merge", "params": {}, "dependsOn": ["a", "b"]},
]


def hooked(events: list[str] | None = ALL_EVENTS, **hook: Any) -> dict[str, Any]:
    webhook: dict[str, Any] = {"url": "https://hooks.example.com/events", **hook}
    if events is not None:
        webhook["events"] = events
    return {"jobs": JOBS, "webhook": webhook}


def problems(plan: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(plan)
    return caught.value.problems


receiver = pytest.fixture(name="receiver")(running_receiver)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIDEO_PIPELINES_API_URL", "VIDEO_PIPELINES_API_KEY", RETRY_DELAYS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")


def verify(request: ReceivedRequest, secret: str = SECRET) -> dict[str, Any]:
    """The payload of a webhook whose Standard Webhooks signature the library accepts."""
    Webhook(secret.encode()).verify(request.body, request.headers)
    payload: dict[str, Any] = json.loads(request.body)
    return payload


# --- the plan field -----------------------------------------------------------------------


def test_webhook_events_are_parsed_kept_on_the_wire_and_in_run_config() -> None:
    plan = parse_plan(hooked(["node.failed", "execution.started"], secretEnv="HOOK"))
    assert plan.webhook is not None
    assert plan.webhook.events == (WebhookEvent.NODE_FAILED, WebhookEvent.EXECUTION_STARTED)
    wire = plan.to_wire()
    assert wire["webhook"] == {"url": "https://hooks.example.com/events", "secretEnv": "HOOK",
                               "events": ["node.failed", "execution.started"]}  # fmt: skip
    assert PlanConfig.from_plan(plan).to_wire()["webhook"] == wire["webhook"]
    assert parse_plan(PlanConfig.from_plan(plan).to_wire()).webhook == plan.webhook
    # Default: only the end's event; an empty list is the same.
    no_events: list[list[str] | None] = [None, []]
    for events in no_events:
        default = parse_plan(hooked(events))
        assert default.webhook is not None and default.webhook.events == ()
        assert "events" not in default.to_wire()["webhook"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["node.completed", "node.completed"], "plan.webhook.events: 'node.completed' is listed twice"),
        (["node.started"], "plan.webhook.events: unknown event 'node.started'; expected one of "
                           "execution.started, node.completed, node.failed"),
        (["completed"], "plan.webhook.events: unknown event 'completed' (the end's event is always sent); "
                        "expected one of execution.started, node.completed, node.failed"),
        ("node.failed", "plan.webhook.events: must be a list of event names "
                        "(execution.started, node.completed, node.failed)"),
    ],
)  # fmt: skip
def test_webhook_events_validation_names_the_field(events: Any, expected: str) -> None:
    assert problems(hooked(events)) == [expected]


def test_the_stored_submission_keeps_the_events_and_never_the_secret(tmp_path: Path) -> None:
    with SubmissionStore(f"sqlite:///{tmp_path / 's.db'}", secret_key=Fernet.generate_key()) as store:
        execution_id = executions.submit(admit(hooked(["node.completed"], secret=SECRET)), store)
        submission = store.get(execution_id)
        assert submission is not None
        assert submission.plan["webhook"] == {"url": "https://hooks.example.com/events", "events": ["node.completed"]}
        assert store.webhook_secret(execution_id) == SECRET


# --- the outbox: node events, their ids, redelivery ---------------------------------------


@pytest.fixture
def outbox(store: SubmissionStore) -> DeliveryOutbox:
    return DeliveryOutbox(store)


def enqueue(outbox: DeliveryOutbox, url: str, event: str = "completed", node_id: str = "", **kwargs: Any) -> Delivery:
    body = encode_payload({"executionId": "exec_01", "event": event, "nodeId": node_id or None})
    values: dict[str, Any] = {"secret_source": "env:HOOK_SECRET", "now": T0, **kwargs}
    return outbox.enqueue(execution_id="exec_01", event=event, node_id=node_id, url=url, body=body, **values)


def send(outbox: DeliveryOutbox, now: datetime = T0) -> list[tuple[Delivery, AttemptOutcome]]:
    return deliver_due(
        outbox,
        secret_for=lambda _delivery: SECRET,
        allowed=AllowedHosts.from_env(),
        schedule=NOW_RETRY,
        now=now,
    )


def raw_rows(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(psycopg2_url(url))
    try:
        with engine.connect() as connection:
            query = sa.text(
                "SELECT webhook_id, event, node_id FROM video_pipelines_webhook_deliveries ORDER BY webhook_id"
            )
            return [dict(row) for row in connection.execute(query).mappings()]
    finally:
        engine.dispose()


def test_webhook_ids_of_execution_and_node_events() -> None:
    # The end's ids are those of earlier versions: deliveries already recorded keep theirs.
    assert webhook_id_for("exec_01", "completed") == "msg_exec_01_completed"
    assert webhook_id_for("exec_01", "execution.started") == "msg_exec_01_execution.started"
    assert webhook_id_for("exec_01", "node.completed", "job-1_x") == "msg_exec_01_node.completed_job-1_x"
    for args in (("exec_01", "failed", ""), ("exec_01", "node.failed", "a_b"), ("0f2c-run-id", "node.completed", "z")):
        assert execution_of_webhook(webhook_id_for(*args)) == args[0]
    assert execution_of_webhook("whatever") is None and execution_of_webhook("msg_exec_01_unknown") is None


def test_webhook_ids_of_later_attempts_name_the_attempt_after_the_execution() -> None:
    # Attempt 1 is the execution's first run: its ids are those it always had.
    assert webhook_id_for("exec_01", "completed", attempt=1) == "msg_exec_01_completed"
    assert webhook_id_for("exec_01", "node.failed", "job-1_x", 1) == "msg_exec_01_node.failed_job-1_x"
    assert webhook_id_for("exec_01", "completed", attempt=2) == "msg_exec_01_attempt2_completed"
    assert webhook_id_for("exec_01", "execution.started", attempt=12) == "msg_exec_01_attempt12_execution.started"
    assert webhook_id_for("exec_01", "node.completed", "job-1_x", 2) == "msg_exec_01_attempt2_node.completed_job-1_x"
    with pytest.raises(WebhookError, match="numbered from 1"):
        webhook_id_for("exec_01", "completed", attempt=0)


@pytest.mark.parametrize("execution_id", [new_execution_id(), str(uuid.uuid4())], ids=["exec_ulid", "dagster_run_id"])
@pytest.mark.parametrize("attempt", [1, 2, 10])
def test_execution_of_webhook_reads_back_every_attempts_ids(execution_id: str, attempt: int) -> None:
    # Node ids that hold '_' and '-', or end like an execution event's name, do not confuse the parse.
    nodes = ("a", "job-1_x", "_-", "a_completed", "completed", "attempt2", "x_attempt3")
    for event in WebhookEvent:
        for node_id in nodes if event.is_node_event else ("",):
            webhook_id = webhook_id_for(execution_id, event.value, node_id, attempt)
            assert execution_of_webhook(webhook_id) == execution_id, webhook_id


@pytest.mark.parametrize(
    "webhook_id",
    [
        "msg_exec_01_attempt1_completed",  # attempt 1 has no marker
        "msg_exec_01_attempt02_completed",
        "msg_exec_01_attempt_completed",
        "msg__attempt2_completed",
        "msg_exec_01_attempt2_attempt3_completed",
        "msg_exec_01_attempt2_node.completed_",
        "msg_exec.01_completed",
        "msg_exec_01_node.completed_bad id",
    ],
)
def test_execution_of_webhook_refuses_ids_it_does_not_make(webhook_id: str) -> None:
    assert execution_of_webhook(webhook_id) is None


def test_each_attempt_of_an_execution_has_its_own_deliveries(outbox: DeliveryOutbox) -> None:
    url = "https://hooks.example.com/attempts"
    moments = (T0 + timedelta(seconds=second) for second in range(10))
    first = enqueue(outbox, url, "node.completed", "a", now=next(moments))
    first_end = enqueue(outbox, url, "failed", now=next(moments))
    second = enqueue(outbox, url, "node.completed", "a", attempt=2, now=next(moments))
    second_end = enqueue(outbox, url, "completed", attempt=2, now=next(moments))
    assert (first.attempt, first.webhook_id) == (1, "msg_exec_01_node.completed_a")
    assert (second.attempt, second.webhook_id) == (2, "msg_exec_01_attempt2_node.completed_a")
    assert enqueue(outbox, url, "node.completed", "a", attempt=2, now=next(moments)) == second
    assert outbox.get(second_end.webhook_id) == second_end
    assert outbox.deliveries("exec_01") == [first, first_end, second, second_end]
    with pytest.raises(WebhookError, match="numbered from 1"):
        enqueue(outbox, url, "completed", attempt=0)


def test_node_events_are_one_delivery_per_node_and_idempotent(
    outbox: DeliveryOutbox, db_url: str, receiver: WebhookReceiver
) -> None:
    url = receiver.url("/nodes")
    moments = (T0 + timedelta(seconds=second) for second in range(10))
    a = enqueue(outbox, url, "node.completed", "a", now=next(moments))
    b = enqueue(outbox, url, "node.completed", "b", now=next(moments))
    failed = enqueue(outbox, url, "node.failed", "b", now=next(moments))
    started = enqueue(outbox, url, "execution.started", now=next(moments))
    end = enqueue(outbox, url, "failed", now=next(moments))
    assert (a.webhook_id, a.node_id) == ("msg_exec_01_node.completed_a", "a")
    assert failed.webhook_id == "msg_exec_01_node.failed_b" and started.node_id == end.node_id == ""
    assert enqueue(outbox, "https://elsewhere.example.com", "node.completed", "a", now=next(moments)) == a
    assert [d.webhook_id for d in outbox.deliveries("exec_01")] == [
        a.webhook_id, b.webhook_id, failed.webhook_id, started.webhook_id, end.webhook_id
    ]  # fmt: skip
    assert raw_rows(db_url) == sorted(
        [{"webhook_id": d.webhook_id, "event": d.event, "node_id": d.node_id} for d in (a, b, failed, started, end)],
        key=lambda row: row["webhook_id"],
    )
    send(outbox, T0 + timedelta(minutes=1))
    requests = receiver.wait_for("/nodes", 5)
    assert [r.headers["webhook-id"] for r in requests] == [d.webhook_id for d in (a, b, failed, started, end)]
    assert [verify(r)["nodeId"] for r in requests] == ["a", "b", "b", None, None]


@pytest.mark.parametrize(
    ("event", "node_id", "message"),
    [
        ("node.completed", "", "needs the id of its plan node"),
        ("node.failed", "bad id!", "needs the id of its plan node"),
        ("execution.started", "a", "is for the whole execution"),
        ("completed", "a", "is for the whole execution"),
        ("node.started", "a", "a webhook event is one of"),
    ],
)
def test_enqueue_refuses_an_event_without_its_node_or_with_one_it_cannot_have(
    outbox: DeliveryOutbox, event: str, node_id: str, message: str
) -> None:
    with pytest.raises(WebhookError, match=message):
        enqueue(outbox, "https://hooks.example.com/x", event, node_id)
    assert outbox.deliveries("exec_01") == []


def test_redelivery_is_a_new_attempt_of_the_same_webhook_id(outbox: DeliveryOutbox, receiver: WebhookReceiver) -> None:
    delivery = enqueue(outbox, receiver.url("/again"), "node.completed", "a")
    [(sent, _)] = send(outbox)
    assert sent.state is DeliveryState.DELIVERED and sent.delivered_at == T0
    assert send(outbox, T0 + timedelta(hours=1)) == []  # delivered: never sent again by itself

    later = T0 + timedelta(hours=2)
    again = outbox.redeliver(delivery.webhook_id, now=later)
    assert (again.state, again.attempts, again.next_attempt_at, again.delivered_at) == (
        DeliveryState.PENDING, 1, later, None
    )  # fmt: skip
    [(resent, outcome)] = send(outbox, later)
    assert outcome.status_code == 200 and resent.state is DeliveryState.DELIVERED and resent.delivered_at == later
    first, second = receiver.wait_for("/again", 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.webhook_id
    assert first.body == second.body
    verify(first), verify(second)
    assert [(a.number, a.status_code) for a in outbox.attempts(delivery.webhook_id)] == [(1, 200), (2, 200)]


def test_a_failed_delivery_redelivered_goes_on_numbering_and_can_be_delivered(
    outbox: DeliveryOutbox, receiver: WebhookReceiver
) -> None:
    receiver.script["/gone"] = [410]
    delivery = enqueue(outbox, receiver.url("/gone"))
    [(failed, _)] = send(outbox)
    assert failed.state is DeliveryState.FAILED
    outbox.redeliver(delivery.webhook_id, now=T0)
    [(delivered, _)] = send(outbox)
    assert delivered.state is DeliveryState.DELIVERED
    assert [(a.number, a.status_code) for a in outbox.attempts(delivery.webhook_id)] == [(1, 410), (2, 200)]


def test_redelivering_a_pending_delivery_makes_it_due_now(outbox: DeliveryOutbox, receiver: WebhookReceiver) -> None:
    receiver.script["/later"] = [500]
    delivery = enqueue(outbox, receiver.url("/later"))
    [(waiting, _)] = send(outbox)
    assert waiting.state is DeliveryState.PENDING and waiting.next_attempt_at == T0 + timedelta(seconds=60)
    soon = T0 + timedelta(seconds=1)
    assert send(outbox, soon) == []  # its backoff has not passed
    assert outbox.redeliver(delivery.webhook_id, now=soon).next_attempt_at == soon
    [(delivered, _)] = send(outbox, soon)
    assert delivered.state is DeliveryState.DELIVERED and delivered.attempts == 2


def test_redelivering_an_unknown_webhook_is_refused(outbox: DeliveryOutbox) -> None:
    with pytest.raises(WebhookError, match="no webhook delivery msg_nope"):
        outbox.redeliver("msg_nope")


# --- the application layer, on in-memory run records ---------------------------------------


@pytest.fixture
def memory_store(tmp_path: Path) -> Iterator[SubmissionStore]:
    with SubmissionStore(f"sqlite:///{tmp_path / 'submissions.db'}", secret_key=Fernet.generate_key()) as opened:
        yield opened


@pytest.fixture
def records() -> MemoryRunRecords:
    return MemoryRunRecords()


def completed(node_id: str, operation: str = "generateVideo", reused_from: str | None = None) -> NodeRecord:
    state = NodeState.REUSED if reused_from else NodeState.COMPLETED
    return NodeRecord(node_id, operation, state, "lineage-" + node_id, video(node_id), reused_from)


def events_of(outbox: DeliveryOutbox, execution_id: str = "exec_1") -> list[tuple[str, str]]:
    return [(d.event, d.node_id) for d in outbox.deliveries(execution_id)]


def test_payloads_of_the_new_events() -> None:
    status = executions.ExecutionStatus(
        "exec_1",
        ExecutionState.PROCESSING,
        nodes={
            "a": executions.NodeStatus(NodeState.COMPLETED, video("a")),
            "b": executions.NodeStatus(NodeState.REUSED, video("b"), reused_from="exec_base"),
            "m": executions.NodeStatus(NodeState.FAILED),
            "r": executions.NodeStatus(NodeState.PENDING),
        },
        run_id="run-1",
    )
    assert executions.started_payload(status) == {
        "executionId": "exec_1", "event": "execution.started", "status": "processing", "totalJobs": 4
    }  # fmt: skip
    assert executions.node_payload(status, "a") == {
        "executionId": "exec_1", "event": "node.completed", "nodeId": "a", "status": "completed",
        "result": video("a").to_wire(), "reusedFrom": None, "error": None,
    }  # fmt: skip
    assert executions.node_payload(status, "b")["status"] == "reused"
    assert executions.node_payload(status, "b")["reusedFrom"] == "exec_base"
    assert executions.node_payload(status, "m", "m (merge) failed: FFmpeg exited 1") == {
        "executionId": "exec_1", "event": "node.failed", "nodeId": "m", "status": "failed",
        "result": None, "reusedFrom": None, "error": "m (merge) failed: FFmpeg exited 1",
    }  # fmt: skip
    assert executions.node_payload(status, "m")["error"] == "the node failed"
    for node_id in ("r", "nope"):
        with pytest.raises(WebhookError, match=f"node {node_id} of execution exec_1"):
            executions.node_payload(status, node_id)


def test_events_are_recorded_as_the_run_goes_in_plan_order_then_the_end(
    records: MemoryRunRecords, memory_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(memory_store)
    records.add_run("exec_1", hooked(), RunState.STARTED)
    recorded = executions.enqueue_progress_events(records, memory_store, outbox, "exec_1")
    assert [(d.event, d.node_id) for d in recorded] == [("execution.started", "")]

    records.nodes["run-exec_1"] = {"b": completed("b")}
    records.steps["run-exec_1"] = {"a": NodeState.RUNNING}
    assert [d.node_id for d in executions.enqueue_progress_events(records, memory_store, outbox, "exec_1")] == ["b"]
    assert executions.enqueue_progress_events(records, memory_store, outbox, "exec_1") == []  # idempotent

    # The run ends before another look: the end sweeps what was missed first, in plan order.
    records.runs[-1] = executions.RunView("run-exec_1", "exec_1", RunState.FAILURE, hooked())
    records.nodes["run-exec_1"] = {"a": completed("a"), "b": completed("b")}
    records.steps["run-exec_1"] = {"m": NodeState.FAILED}
    records.node_failures["run-exec_1"] = {"m": "m (merge) failed: no inputs"}
    end = executions.enqueue_webhook(records, memory_store, outbox, "exec_1")
    assert end is not None and end.event == "failed"
    assert events_of(outbox) == [
        ("execution.started", ""), ("node.completed", "b"), ("node.completed", "a"), ("node.failed", "m"), ("failed", "")
    ]  # fmt: skip
    failed = next(d for d in outbox.deliveries("exec_1") if d.event == "node.failed")
    assert json.loads(failed.body)["error"] == "m (merge) failed: no inputs"
    # The end's payload is the one docs/webhooks.md describes (plus cost and savedUsd), without an "event" key.
    assert set(json.loads(end.body)) == {
        "executionId", "status", "video", "error", "completedJobs", "totalJobs", "cost", "savedUsd"
    }  # fmt: skip
    # Nothing is reported after the end.
    records.nodes["run-exec_1"]["m"] = completed("m", "merge")
    assert executions.enqueue_progress_events(records, memory_store, outbox, "exec_1") == []
    assert executions.enqueue_webhook(records, memory_store, outbox, "exec_1") == end


def test_only_the_subscribed_events_are_recorded(records: MemoryRunRecords, memory_store: SubmissionStore) -> None:
    outbox = DeliveryOutbox(memory_store)
    nodes = [completed("a"), completed("b", reused_from="exec_base"), completed("m", "merge")]
    records.add_run("exec_1", hooked(["node.completed"]), RunState.SUCCESS, nodes=nodes)
    records.add_run("exec_2", hooked(None), RunState.SUCCESS, nodes=nodes)
    records.add_run("exec_3", hooked(["node.failed", "execution.started"]), RunState.SUCCESS, nodes=nodes)
    for execution_id in ("exec_1", "exec_2", "exec_3"):
        executions.enqueue_webhook(records, memory_store, outbox, execution_id)
    assert events_of(outbox, "exec_1") == [("node.completed", "a"), ("node.completed", "b"), ("node.completed", "m"),
                                           ("completed", "")]  # fmt: skip
    assert json.loads(outbox.deliveries("exec_1")[1].body)["status"] == "reused"
    assert events_of(outbox, "exec_2") == [("completed", "")]
    assert events_of(outbox, "exec_3") == [("execution.started", ""), ("completed", "")]


def test_an_execution_that_never_started_reports_no_start(
    records: MemoryRunRecords, memory_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(memory_store)
    pending = executions.submit(admit(hooked()), memory_store)
    assert executions.enqueue_progress_events(records, memory_store, outbox, pending) == []
    executions.cancel(records, memory_store, pending)  # canceled before it was launched
    assert events_of(outbox, pending) == [("canceled", "")]
    records.add_run("exec_q", hooked(), RunState.CANCELED)  # canceled while queued: no node got anywhere
    executions.enqueue_webhook(records, memory_store, outbox, "exec_q")
    assert events_of(outbox, "exec_q") == [("canceled", "")]


def test_running_runs_are_swept_only_when_their_plan_subscribes(
    records: MemoryRunRecords, memory_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(memory_store)
    subscribed = records.add_run("exec_1", hooked(["node.completed"]), RunState.STARTED, nodes=[completed("a")])
    plain = records.add_run("exec_2", hooked(None), RunState.STARTED, nodes=[completed("a")])
    recorded = executions.enqueue_running_events(records, memory_store, outbox, [subscribed, plain])
    assert [(d.execution_id, d.event, d.node_id) for d in recorded] == [("exec_1", "node.completed", "a")]


def test_the_ended_run_scan_records_the_end_of_an_execution_with_earlier_events(
    records: MemoryRunRecords, memory_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(memory_store)
    records.add_run("exec_1", hooked(), RunState.STARTED)
    executions.enqueue_progress_events(records, memory_store, outbox, "exec_1")
    records.runs[-1] = executions.RunView("run-exec_1", "exec_1", RunState.SUCCESS, hooked())
    records.nodes["run-exec_1"] = {node_id: completed(node_id) for node_id in ("a", "b", "m")}
    records.ended["run-exec_1"] = datetime.now(UTC)
    assert executions.enqueue_recently_ended(records, memory_store, outbox, EndedRunScan()) == 1
    assert events_of(outbox)[-1] == ("completed", "")


def test_redeliver_checks_the_webhook_belongs_to_the_execution(
    records: MemoryRunRecords, memory_store: SubmissionStore
) -> None:
    outbox = DeliveryOutbox(memory_store)
    records.add_run("exec_1", hooked(), RunState.SUCCESS, nodes=[completed(n) for n in ("a", "b", "m")])
    records.add_run("exec_2", hooked(), RunState.SUCCESS, nodes=[completed(n) for n in ("a", "b", "m")])
    end = executions.enqueue_webhook(records, memory_store, outbox, "exec_1")
    assert end is not None
    with pytest.raises(ExecutionNotFound, match=f"execution exec_2 has no webhook delivery {end.webhook_id}"):
        executions.redeliver(memory_store, "exec_2", end.webhook_id)
    with pytest.raises(ExecutionNotFound, match="execution exec_1 has no webhook delivery msg_nope"):
        executions.redeliver(memory_store, "exec_1", "msg_nope")
    assert executions.redeliver(memory_store, "exec_1", end.webhook_id).webhook_id == end.webhook_id
    report = executions.delivery_report(memory_store, "exec_1")
    assert [(entry["event"], entry["nodeId"]) for entry in report][:2] == [("execution.started", None),
                                                                          ("node.completed", "a")]  # fmt: skip


# --- execute_plan in process, the sensors driven by hand ------------------------------------


class GatedMedia:
    """Serves files over HTTP on 127.0.0.1; a GET of a `gated` file waits until `release()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gated: set[str] = set()
        self._open = threading.Event()
        media = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                if name in media.gated:
                    media._open.wait(timeout=300)
                path = media.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = serve_in_background(Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    def release(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self.release()
        shut_down(self._server)


@pytest.fixture
def media(tmp_path: Path) -> Iterator[GatedMedia]:
    root = tmp_path / "media"
    root.mkdir()
    make_tone(root / "voice.mp3", 660, 2)
    served = GatedMedia(root)
    yield served
    served.stop()


@pytest.fixture
def target(dagster_home: Path) -> Iterator[client.Deployment]:
    with client.deployment() as deployment:
        yield deployment


def voiced_plan(audio_url: str, receiver_url: str, events: list[str]) -> dict[str, Any]:
    return {
        "jobs": [
            {"id": "a", "type": "generateVideo", "params": {"prompt": "Hook", "duration": 1, "resolution": 64}},
            {"id": "voice", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["a"]},
        ],
        "webhook": {"url": receiver_url, "secret": SECRET, "events": events},
    }


def launch(target: client.Deployment, plan: dict[str, Any]) -> tuple[str, dg.RunRequest]:
    """Submit `plan` and let the plan sensor turn it into a run request."""
    execution_id = client.submit(plan, target=target)
    with dg.build_sensor_context(
        instance=target.instance, resources={"submissions": SubmissionStoreResource()}
    ) as context:
        result = submitted_plans(context)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    return execution_id, request


def stop_compute_log_tails(home: Path) -> None:
    """Stop the `tail -F` pairs Dagster's log capture left for runs of `home`'s instance. Run in a thread, the
    in-process executor's capture is at times never closed (seen under CI load), and its tails, watched only
    for the death of this test process, would outlive the test."""
    storage = f"{home}/storage/"
    tails = [entry for entry in live_processes() if entry.command.startswith("tail -F") and storage in entry.command]
    watchers = [
        entry
        for entry in live_processes()
        if "watch_orphans.py" in entry.command and any(f" {tail.pid}" in entry.command for tail in tails)
    ]
    for entry in [*tails, *watchers]:  # SIGKILL: in CI they outlived a SIGTERM by 10 s
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGKILL)
    alive = {entry.pid for entry in [*tails, *watchers]}
    assert not wait_until_none(lambda: [e for e in live_processes() if e.pid in alive], 10)


def run_in_process(target: client.Deployment, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return execute_plan_job().execute_in_process(
        run_config=request.run_config, instance=target.instance, tags=request.tags, raise_on_error=False
    )


def run_event(target: client.Deployment, run_id: str, kind: dg.DagsterEventType) -> dg.RunStatusSensorContext:
    [record] = target.instance.get_records_for_run(run_id, of_type=kind).records
    event = record.event_log_entry.dagster_event
    run = target.instance.get_run_by_id(run_id)
    assert event is not None and run is not None
    return dg.build_run_status_sensor_context(
        sensor_name=f"webhook_on_{kind.value}",
        dagster_event=event,
        dagster_instance=target.instance,
        dagster_run=run,
        resources={"submissions": SubmissionStoreResource()},
    )


def test_execute_plan_sends_started_each_node_then_the_end_each_signed_with_its_own_id(
    target: client.Deployment, media: GatedMedia, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    media.gated.add("voice.mp3")  # the second node waits until the test has seen the first one reported
    plan = voiced_plan(media.url("voice.mp3"), receiver.url("/events"), ALL_EVENTS)
    execution_id, request = launch(target, plan)
    finished: list[dg.ExecuteInProcessResult] = []
    worker = threading.Thread(target=lambda: finished.append(run_in_process(target, request)))
    worker.start()
    try:
        # The delivery sensor's look, repeated: node events are found while the run is in progress.
        deadline = time.monotonic() + 120
        while len(receiver.received("/events")) < 2:
            assert time.monotonic() < deadline and worker.is_alive(), receiver.received("/events")
            poll_deliveries(target.store, target.instance, EndedRunScan(), wait_seconds=0)
            time.sleep(0.2)
        running = target.records.find_run(execution_id)
        assert running is not None and running.state is RunState.STARTED
    finally:
        media.release()
        worker.join(timeout=300)
        stop_compute_log_tails(target.home)
    [result] = finished
    assert result.success

    with run_event(target, result.run_id, dg.DagsterEventType.RUN_START) as context:
        webhook_on_started(context)
    with run_event(target, result.run_id, dg.DagsterEventType.RUN_SUCCESS) as context:
        webhook_on_completed(context)

    requests = receiver.wait_for("/events", 4)
    payloads = [verify(request) for request in requests]
    assert [(p.get("event"), p.get("nodeId"), p["status"]) for p in payloads] == [
        ("execution.started", None, "processing"),
        ("node.completed", "a", "completed"),
        ("node.completed", "voice", "completed"),
        (None, None, "completed"),
    ]
    ids = [request.headers["webhook-id"] for request in requests]
    assert ids == [
        f"msg_{execution_id}_execution.started",
        f"msg_{execution_id}_node.completed_a",
        f"msg_{execution_id}_node.completed_voice",
        f"msg_{execution_id}_completed",
    ]
    final = client.status(execution_id, target=target)
    assert payloads[0]["totalJobs"] == 2
    assert payloads[2]["result"] == final["jobs"]["voice"]["result"] and payloads[2]["error"] is None
    assert payloads[3]["video"]["url"] == final["result"]["url"] and payloads[3]["completedJobs"] == 2
    time.sleep(0.5)
    assert len(receiver.received("/events")) == 4  # each event once

    # `video-pipelines deliveries redeliver` sends one again with the same webhook-id, as a new attempt.
    assert cli.main(["deliveries", "redeliver", ids[1]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["webhookId"], shown["state"], shown["nodeId"]) == (ids[1], "pending", "a")
    executions.deliver(target.store)
    again = receiver.wait_for("/events", 5)[-1]
    assert again.headers["webhook-id"] == ids[1] and again.body == requests[1].body
    verify(again)
    assert cli.main(["deliveries", execution_id]) == 0
    report = {entry["webhookId"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert list(report) == ids
    assert [a["number"] for a in report[ids[1]]["attempts"]] == [1, 2]
    assert all(report[webhook_id]["state"] == "delivered" for webhook_id in ids)
    assert cli.main(["deliveries", "redeliver", "msg_exec_nope_completed"]) == 2
    assert "no webhook delivery msg_exec_nope_completed" in capsys.readouterr().err


def test_a_failing_node_gives_node_failed_before_the_end(
    target: client.Deployment, media: GatedMedia, receiver: WebhookReceiver
) -> None:
    plan = voiced_plan(media.url("no-such-voice.mp3"), receiver.url("/failing"), ["node.completed", "node.failed"])
    execution_id, request = launch(target, plan)
    result = run_in_process(target, request)
    assert not result.success
    with run_event(target, result.run_id, dg.DagsterEventType.RUN_START) as context:
        webhook_on_started(context)  # not subscribed to execution.started: nothing
    with run_event(target, result.run_id, dg.DagsterEventType.RUN_FAILURE) as context:
        webhook_on_failed(context)
    payloads = [verify(request) for request in receiver.wait_for("/failing", 3)]
    assert [(p.get("event"), p.get("nodeId"), p["status"]) for p in payloads] == [
        ("node.completed", "a", "completed"),
        ("node.failed", "voice", "failed"),
        (None, None, "failed"),
    ]
    assert payloads[1]["error"].startswith("voice (lipSync) failed") and payloads[1]["result"] is None
    assert payloads[2]["error"] == client.status(execution_id, target=target)["error"]
    assert [d["event"] for d in client.deliveries(execution_id, target=target)] == [
        "node.completed", "node.failed", "failed"
    ]  # fmt: skip
