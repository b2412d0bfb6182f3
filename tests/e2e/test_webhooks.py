"""End to end: signed webhooks from the run-status sensors of a real dagster-daemon (PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from standardwebhooks import Webhook

from video_pipelines.doors import client
from video_pipelines.errors import PlanValidationError
from video_pipelines.plan.overrides import SubmitOptions

from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..receiver import ReceivedRequest, WebhookReceiver, running_receiver
from .test_graphql import LAUNCH, launch_params

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-webhooks")]

SECRET = "sk-webhook-e2e-7f3a9c"  # a plain secret given to `submit`
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' own form
DIRECT_SECRET = "direct-run-secret-5b1d"  # for runs launched directly, through secretEnv
SECRETS = (SECRET, WHSEC, DIRECT_SECRET)

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "a", "type": "generateVideo", "params": {"prompt": "Hook A", "duration": 1, "resolution": 64}},
        {"id": "b", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a"]},
    ]
}


receiver = pytest.fixture(scope="module", name="receiver")(running_receiver)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDeployment]:
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-webhooks-key",
        "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS": "1,1,1,1,1,1",
        "WEBHOOK_SECRET_DIRECT": DIRECT_SECRET,
    }
    with (
        deployment_database() as url,
        dagster_deployment(tmp_path_factory.mktemp("e2e_webhooks"), url, extra_env=env) as d,
    ):
        yield d


@pytest.fixture
def target(deployment: DagsterDeployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    with deployment.client(monkeypatch) as target:
        yield target


def verify(request: ReceivedRequest, secret: str) -> dict[str, Any]:
    """Check both signatures independently; returns the payload."""
    expected_hex = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-webhook-signature"] == expected_hex
    key = secret if secret.startswith("whsec_") else secret.encode()
    Webhook(key).verify(request.body, request.headers)  # raises on a bad signature or stale timestamp
    assert request.headers["content-type"] == "application/json"
    payload: dict[str, Any] = json.loads(request.body)
    return payload


def test_completed_webhook_is_signed_and_delivered_once(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    execution_id = client.submit(
        PLAN, SubmitOptions(webhook_url=receiver.url("/done"), webhook_secret=SECRET), target=target
    )
    final = client.wait(execution_id, timeout=120, target=target)
    assert final["status"] == "completed"
    [request] = receiver.wait_for("/done", 1)
    payload = verify(request, SECRET)
    assert payload == {
        "executionId": execution_id,
        "status": "completed",
        "video": {
            "url": final["result"]["url"], "duration": final["result"]["duration"],
            "aspectRatio": "1:1", "width": final["result"]["width"], "height": final["result"]["height"],
            "status": "completed",
        },
        "error": None,
        "completedJobs": 2,
        "totalJobs": 2,
        "cost": {"totalUsd": 0.0, "jobs": {"a": 0.0, "b": 0.0}},
        "savedUsd": 0.0,
    }  # fmt: skip
    assert request.headers["webhook-id"]
    deployment.next_ticks(target.instance)  # the webhook sensors tick again
    assert len(receiver.received("/done")) == 1  # never delivered again
    [delivery] = client.deliveries(execution_id, target=target)
    assert delivery["state"] == "delivered" and [a["statusCode"] for a in delivery["attempts"]] == [200]


def test_whsec_secret_and_direct_run_with_secret_env(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    execution_id = client.submit(
        PLAN, SubmitOptions(webhook_url=receiver.url("/whsec"), webhook_secret=WHSEC), target=target
    )
    assert client.wait(execution_id, timeout=120, target=target)["status"] == "completed"
    verify(receiver.wait_for("/whsec", 1)[0], WHSEC)

    plan = {**PLAN, "webhook": {"url": receiver.url("/direct"), "secretEnv": "WEBHOOK_SECRET_DIRECT"}}
    launched = deployment.graphql(LAUNCH, {"params": launch_params(plan)})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess"
    run_id = launched["run"]["runId"]
    payload = verify(receiver.wait_for("/direct", 1, timeout=120)[0], DIRECT_SECRET)
    assert payload["executionId"] == run_id and payload["status"] == "completed"


def test_500_503_200_is_three_attempts_with_one_webhook_id(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    receiver.script["/flaky"] = [500, 503]
    execution_id = client.submit(
        PLAN, SubmitOptions(webhook_url=receiver.url("/flaky"), webhook_secret=SECRET), target=target
    )
    requests = receiver.wait_for("/flaky", 3, timeout=120)
    assert len({request.headers["webhook-id"] for request in requests}) == 1
    for request in requests:
        verify(request, SECRET)
    deployment.next_ticks(target.instance)  # the webhook sensors tick again
    assert len(receiver.received("/flaky")) == 3  # no fourth
    [delivery] = client.deliveries(execution_id, target=target)
    assert [a["statusCode"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["state"] == "delivered"


def test_receiver_down_then_back_across_a_daemon_restart(
    deployment: DagsterDeployment, target: client.Deployment
) -> None:
    down = WebhookReceiver().start()
    port = down.port
    down.stop()  # nothing listens on the port now
    execution_id = client.submit(
        PLAN, SubmitOptions(webhook_url=f"http://127.0.0.1:{port}/late", webhook_secret=SECRET), target=target
    )
    assert client.wait(execution_id, timeout=120, target=target)["status"] == "completed"
    deadline = time.monotonic() + 60
    while not (deliveries := client.deliveries(execution_id, target=target)) or not deliveries[0]["attempts"]:
        assert time.monotonic() < deadline, deployment.log_tail()
        time.sleep(0.5)
    assert deliveries[0]["attempts"][0]["error"]

    deployment.stop("daemon")
    back = WebhookReceiver(port=port).start()
    try:
        deployment.start(
            "daemon", ["dagster-daemon", "run", "-w", str(Path(__file__).resolve().parents[2] / "workspace.yaml")]
        )
        requests = back.wait_for("/late", 1, timeout=90)
        verify(requests[0], SECRET)
        deployment.next_ticks(target.instance)  # the webhook sensors tick again
        assert len(back.received("/late")) == 1
    finally:
        back.stop()
    [delivery] = client.deliveries(execution_id, target=target)
    assert delivery["state"] == "delivered" and delivery["attempts"][-1]["statusCode"] == 200


def test_failed_canceled_and_rejected_executions_are_reported(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    broken = {
        "jobs": [
            PLAN["jobs"][0],
            {
                "id": "voice",
                "type": "lipSync",
                "params": {"audioUrl": receiver.url("/no-such-audio.mp3")},
                "dependsOn": ["a"],
            },
        ]
    }
    failed_id = client.submit(
        broken, SubmitOptions(webhook_url=receiver.url("/failed"), webhook_secret=SECRET), target=target
    )
    failed = verify(receiver.wait_for("/failed", 1, timeout=120)[0], SECRET)
    assert failed["executionId"] == failed_id and failed["status"] == "failed" and failed["video"] is None
    assert "voice (lipSync) failed" in failed["error"] and failed["completedJobs"] == 1 and failed["totalJobs"] == 2

    # Stored past the doors' base check (a door refuses it at once): the sensor rejects it, and says so.
    rejected_id = target.store.submit(
        PLAN, SubmitOptions(base_execution_id="exec_gone", webhook_url=receiver.url("/rejected"))
    )[0].execution_id
    rejected = json.loads(receiver.wait_for("/rejected", 1, timeout=60)[0].body)
    assert rejected["executionId"] == rejected_id and rejected["status"] == "failed"
    assert rejected["error"] == "invalid plan: plan.baseExecutionId: base execution exec_gone does not exist"

    long_plan = {"jobs": [{"id": "long", "type": "generateVideo", "params": {"prompt": "long", "duration": 60}}]}
    canceled_id = client.submit(
        long_plan, SubmitOptions(webhook_url=receiver.url("/canceled"), webhook_secret=SECRET), target=target
    )
    deadline = time.monotonic() + 60
    while client.status(canceled_id, target=target)["currentJob"] != "long":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    client.cancel(canceled_id, target=target)
    canceled = verify(receiver.wait_for("/canceled", 1, timeout=60)[0], SECRET)
    assert canceled["status"] == "canceled" and canceled["video"] is None


def test_a_private_destination_is_refused_at_submit(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    # ::1 is loopback and not in VIDEO_PIPELINES_ALLOWED_HOSTS (which allows 127.0.0.1 only): refused as the API
    # refuses it, nothing stored. A hostname's addresses are checked at delivery (tests/unit/test_webhooks.py).
    before = len(target.store.newest(None))
    with pytest.raises(PlanValidationError, match=r"plan\.webhook\.url: refused: ::1 is not a public address"):
        client.submit(
            PLAN, SubmitOptions(webhook_url=f"http://[::1]:{receiver.port}/ssrf", webhook_secret=SECRET), target=target
        )
    assert len(target.store.newest(None)) == before and receiver.received("/ssrf") == []


def test_subscribed_events_come_from_the_daemon_each_signed_with_its_own_id(
    deployment: DagsterDeployment, target: client.Deployment, receiver: WebhookReceiver
) -> None:
    events = ["execution.started", "node.completed", "node.failed"]
    plan = {**PLAN, "webhook": {"url": receiver.url("/events"), "secret": SECRET, "events": events}}
    execution_id = client.submit(plan, target=target)
    assert client.wait(execution_id, timeout=120, target=target)["status"] == "completed"
    requests = receiver.wait_for("/events", 4, timeout=60)
    by_id = {request.headers["webhook-id"]: verify(request, SECRET) for request in requests}
    expected = [
        f"msg_{execution_id}_execution.started",
        f"msg_{execution_id}_node.completed_a",
        f"msg_{execution_id}_node.completed_b",
        f"msg_{execution_id}_completed",
    ]
    assert sorted(by_id) == sorted(expected)
    assert by_id[expected[0]]["event"] == "execution.started" and by_id[expected[0]]["totalJobs"] == 2
    assert [by_id[webhook_id]["nodeId"] for webhook_id in expected[1:3]] == ["a", "b"]
    assert by_id[expected[3]]["status"] == "completed" and "event" not in by_id[expected[3]]
    # Recorded in that order: started, the nodes in plan order, the end last.
    assert [d["webhookId"] for d in client.deliveries(execution_id, target=target)] == expected
    deployment.next_ticks(target.instance)  # the webhook sensors tick again
    assert len(receiver.received("/events")) == 4  # each event once


def test_secrets_are_nowhere_in_dagster_storage_or_logs(deployment: DagsterDeployment) -> None:
    """Runs after the others in this module: every secret they used is absent from every table and log."""
    with psycopg2.connect(deployment.env["VIDEO_PIPELINES_DATABASE_URL"]) as db, db.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        tables = [name for (name,) in cursor.fetchall()]
        assert "runs" in tables and "event_logs" in tables and "video_pipelines_submissions" in tables
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')
            dump = "\n".join(repr(row) for row in cursor.fetchall())
            for secret in SECRETS:
                assert secret not in dump, f"a webhook secret is stored in table {table}"
    files = [*deployment.logs.rglob("*"), *(deployment.home / "storage").rglob("*")]
    for path in files:
        if path.is_file():
            text = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in text, f"a webhook secret is in {path}"
