"""Our webhooks against a receiver in Node (tests/node/receiver.mjs): it checks both signatures over the raw body
and over `JSON.stringify(JSON.parse(body))`, the way the seed SDK's backend verifies after `express.json()`."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from video_pipelines.executions import ExecutionStatus, webhook_payload
from video_pipelines.executions.notifications import node_payload
from video_pipelines.webhooks import SUBMISSION_SOURCE, DeliveryOutbox, RetrySchedule, deliver_due, encode_payload

from ..node import RECEIVER, node_executable
from ..unit.test_webhooks import LOOPBACK, SECRET, status_doc

ONE_ATTEMPT = RetrySchedule(delays=(), jitter=0.0)


@pytest.fixture
def node_receiver() -> Iterator[str]:
    """The Node receiver's URL, on a port it chose; stopped afterwards."""
    env = {**os.environ, "WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([node_executable(), str(RECEIVER)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        started = process.stdout.readline()  # '' if it died before listening
        assert started, f"the Node receiver exited with {process.wait()} before listening"
        yield f"http://127.0.0.1:{httpx.Response(200, content=started).json()['port']}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _status(execution_id: str, state: str = "completed", **extra: Any) -> ExecutionStatus:
    """An ended execution with whole-number seconds and nodes named by numbers (JavaScript orders those first)."""
    document = status_doc(execution_id, state, **extra)
    video = document["result"] = copy.deepcopy(document["jobs"]["job1"]["result"]) | {"duration": 8.0}
    jobs = document["jobs"]
    document["jobs"] = {"10": jobs["job1"] | {"result": video}, "intro": jobs["job2"], "2": jobs["job3"]}
    return ExecutionStatus.from_wire(document)


EDGES: dict[str, Any] = {
    "numbers": [
        8.0,
        -0.0,
        0.5,
        0.1 + 0.2,
        1 / 3,
        1e21,
        1e20,
        1e-7,
        1.5e-7,
        1e-6,
        123e-20,
        5e-324,
        1.7976931348623157e308,
    ],
    "integers": [0, -1, 2**53, 2**53 + 1, 2**60, -(2**64)],
    "text": ["é", "Zoë « ça » — 日本語 😀", "\u2028\u2029", "\x00\x01\x1f\x7f", '"\\/', "\ud800 alone", "</script>"],
    "keys": {"b": 1, "2": 2, "a": 3, "1": 4, "01": 5, "4294967295": 6, "4294967294": 7, "-1": 8},
    "nested": [{"deep": [[{"x": 1.0}]]}, [], {}, None, True, False],
}


def _deliveries() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(execution id, event, node id, payload) of each webhook sent."""
    failed = _status("exec_js2", "failed", error="Échec : la voix « Zoë » est introuvable — 声が見つかりません ✗")
    return [
        ("exec_js1", "completed", "", webhook_payload(_status("exec_js1"))),
        ("exec_js2", "failed", "", webhook_payload(failed)),
        ("exec_js3", "node.completed", "10", node_payload(_status("exec_js3"), "10")),
        ("exec_js4", "completed", "", EDGES),
    ]


def test_a_node_receiver_verifies_every_webhook_over_the_raw_body_and_over_json_stringify(
    tmp_path: Path, node_receiver: str
) -> None:
    outbox = DeliveryOutbox(sa.create_engine(f"sqlite:///{tmp_path / 'outbox.db'}"))
    sent = [
        outbox.enqueue(
            execution_id=execution_id,
            event=event,
            node_id=node_id,
            url=f"{node_receiver}/hook",
            body=encode_payload(payload),
            secret_source=SUBMISSION_SOURCE,
        )
        for execution_id, event, node_id, payload in _deliveries()
    ]
    results = deliver_due(outbox, secret_for=lambda _: SECRET, allowed=LOOPBACK, schedule=ONE_ATTEMPT, limit=10)

    reports = {report["webhookId"]: report for report in httpx.get(f"{node_receiver}/deliveries").json()}
    verified = {"raw": {"hex": True, "standard": True}, "reserialized": {"hex": True, "standard": True}, "same": True}
    assert reports == {delivery.webhook_id: {"webhookId": delivery.webhook_id, **verified} for delivery in sent}
    assert [outcome.status_code for _, outcome in results] == [200] * len(sent)
