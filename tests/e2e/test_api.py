"""End to end over HTTP: `video-pipelines serve` beside a real dagster-daemon on PostgreSQL.

The seed flow as the SDK runs it: the base plan in the seed's own JSON, then a dependent plan
with `baseExecutionId` and a webhook, whose first node attaches to the base's final video;
the signed webhook arrives at a real receiver. Then the same flow through the
`video-pipelines` CLI on a "client machine": a process with only `VIDEO_PIPELINES_API_URL`
and `VIDEO_PIPELINES_API_KEY`, no DAGSTER_HOME and no database URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from video_pipelines.doors.api_client import API_KEY_ENV, API_URL_ENV, ApiClient
from video_pipelines.errors import ExecutionNotFound
from video_pipelines.operations.ffmpeg import probe

from ..api_process import api_process
from ..conftest import serving
from ..media import dominant_frequency, local_path_of, make_tone, pcm_mono
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..receiver import ReceivedRequest, WebhookReceiver

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-api")]

SECRET_KEY = "e2e-api-passphrase"
WEBHOOK_SECRET = "sk-seed-flow-3d9e"


def seed_base() -> dict[str, Any]:
    """The seed SDK's base plan, in its own JSON ("type": "generate", "output"), made small."""
    scene = {"duration": 1, "resolution": 90}
    return {
        "jobs": [
            {"id": "job1", "type": "generate", "params": {"prompt": "Scene 1: a sunrise", **scene}, "output": "$job1"},
            {"id": "job2", "type": "generate", "params": {"prompt": "Scene 2: the desk", **scene}, "output": "$job2"},
            {
                "id": "job3",
                "type": "merge",
                "params": {"transition": "crossfade"},
                "dependsOn": ["job1", "job2"],
                "output": "$job3",
            },
        ]
    }


def seed_dependent(audio_url: str) -> dict[str, Any]:
    """The dependent plan: its first node names no dependency, so it takes the base's final video."""
    return {
        "jobs": [
            {"id": "job1", "type": "lipSync", "params": {"audioUrl": audio_url}, "output": "$job1"},
            {
                "id": "job2",
                "type": "addSubtitles",
                "params": {"text": "¡Hola!", "language": "es"},
                "dependsOn": ["job1"],
                "output": "$job2",
            },
        ]
    }


@dataclass
class Service:
    deployment: DagsterDeployment
    url: str
    key: str
    other_key: str
    audio: str
    receiver: WebhookReceiver

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def create_key(deployment: DagsterDeployment, name: str, tenant: str) -> str:
    done = subprocess.run(
        ["video-pipelines", "api-keys", "create", "--name", name, "--tenant", tenant],
        env=deployment.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("e2e_api")
    media = tmp / "media"
    media.mkdir()
    make_tone(media / "spanish.mp3", 600, 6)
    # Another voice track for the CLI's flow: the same dependent plan would be reused from the HTTP flow's
    # (content-addressed reuse within the tenant), and the CLI's must run.
    make_tone(media / "spanish-cli.mp3", 650, 6)
    receiver = WebhookReceiver().start()
    env = {"VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1", "VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY}
    try:
        with (
            serving(media) as audio,
            deployment_database() as database_url,
            dagster_deployment(tmp, database_url, extra_env=env, webserver=False) as deployment,
        ):
            key = create_key(deployment, "seed-app", "acme")
            other = create_key(deployment, "someone-else", "globex")
            with api_process(env=deployment.env, logs=deployment.logs) as server:
                yield Service(deployment, server.url, key, other, audio.url("").rstrip("/"), receiver)
    finally:
        receiver.stop()


def verify(request: ReceivedRequest, secret: str) -> dict[str, Any]:
    """Both signatures, checked independently of our code; returns the payload."""
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-webhook-signature"] == expected
    Webhook(secret.encode()).verify(request.body, request.headers)  # raises on a bad signature or stale timestamp
    payload: dict[str, Any] = json.loads(request.body)
    return payload


def wait(service: Service, api: ApiClient, execution_id: str) -> dict[str, Any]:
    try:
        return api.wait(execution_id, timeout=240)
    except Exception:
        print(service.deployment.log_tail())
        raise


def check_dependent(service: Service, base: dict[str, Any], dependent: dict[str, Any], tone: float = 600) -> None:
    assert dependent["status"] == "completed", dependent
    assert dependent["reusedJobs"] == 0 and dependent["completedJobs"] == dependent["totalJobs"] == 2
    out = local_path_of(dependent["result"]["url"])
    assert abs(probe(out).duration - base["result"]["duration"]) < 0.1  # the base's final video, lip-synced
    assert abs(dominant_frequency(pcm_mono(out)) - tone) < 30


def check_webhook(request: ReceivedRequest, dependent: dict[str, Any]) -> None:
    payload = verify(request, WEBHOOK_SECRET)
    assert payload["executionId"] == dependent["executionId"] and payload["status"] == "completed"
    assert payload["video"]["url"] == dependent["result"]["url"] and payload["error"] is None
    assert payload["completedJobs"] == payload["totalJobs"] == 2
    assert request.headers["webhook-id"] == f"msg_{dependent['executionId']}_completed"


def test_seed_flow_over_http(service: Service) -> None:
    with service.http() as http, ApiClient(service.url, service.key) as api:
        answer = http.post(
            "/api/execute", content=json.dumps(seed_base()), headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 202, answer.text
        assert list(answer.json()) == ["executionId"]
        base_id = answer.json()["executionId"]
        base = wait(service, api, base_id)
        assert base["status"] == "completed" and base["completedJobs"] == 3, base

        dependent_plan = {
            **seed_dependent(f"{service.audio}/spanish.mp3"),
            "baseExecutionId": base_id,
            "webhook": {"url": service.receiver.url("/seed"), "secret": WEBHOOK_SECRET},
        }
        answer = http.post("/api/execute", json=dependent_plan)
        assert answer.status_code == 202, answer.text
        dependent = wait(service, api, answer.json()["executionId"])
        check_dependent(service, base, dependent)
        [request] = service.receiver.wait_for("/seed", 1)
        check_webhook(request, dependent)

        # The webhook log over HTTP, and a redelivery: the same webhook-id, recorded as a new attempt.
        # The sender records its attempt once the receiver has answered: a moment after the receiver has the request.
        deadline = time.monotonic() + 10
        while (delivery := api.deliveries(dependent["executionId"])[0])["state"] == "pending":
            assert time.monotonic() < deadline, delivery
            time.sleep(0.1)
        assert delivery["state"] == "delivered" and [a["statusCode"] for a in delivery["attempts"]] == [200]
        api.redeliver(dependent["executionId"], delivery["webhookId"])
        first, again = service.receiver.wait_for("/seed", 2)
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        assert verify(again, WEBHOOK_SECRET) == verify(first, WEBHOOK_SECRET)

        check_metrics(http)

    # Another tenant sees none of it.
    with ApiClient(service.url, service.other_key) as other, pytest.raises(ExecutionNotFound):
        other.status(base_id)


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics of the real server, parsed by prometheus_client: {(sample name, labels): value}."""
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def check_metrics(http: httpx.Client) -> None:
    """After the seed flow (the first test on a fresh database): its two executions and five nodes, exactly."""
    deadline = time.monotonic() + 30
    # The redelivery's attempt is recorded just after the receiver answered it, a submission is
    # marked launched by the submission sensor's tick after the one that created its run, and an
    # execution's end is counted by its ended-run sensor, which may come after its webhook.
    while True:
        metrics = scrape(http)
        settled = (
            metrics.get(("video_pipelines_webhook_attempts_total", (("outcome", "delivered"),))) == 2
            and metrics.get(("video_pipelines_pending_submissions", ())) == 0
            and metrics.get(("video_pipelines_executions_finished_total", (("status", "completed"),))) == 2
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metrics[("video_pipelines_webhook_attempts_total", (("outcome", "delivered"),))] == 2
    assert metrics[("video_pipelines_executions_submitted_total", ())] == 2
    assert metrics[("video_pipelines_executions_started_total", ())] == 2
    assert metrics[("video_pipelines_executions_finished_total", (("status", "completed"),))] == 2
    assert metrics[("video_pipelines_executions_finished_total", (("status", "failed"),))] == 0
    assert metrics[("video_pipelines_pending_submissions", ())] == 0
    assert metrics[("video_pipelines_queued_runs", ())] == 0
    node_counts = {
        dict(labels)["operation"]: value
        for (name, labels), value in metrics.items()
        if name == "video_pipelines_node_seconds_count"
    }
    assert node_counts == {"generateVideo": 2, "merge": 1, "lipSync": 1, "addSubtitles": 1}
    sums = [value for (name, _), value in metrics.items() if name == "video_pipelines_node_seconds_sum"]
    assert len(sums) == 4 and all(value > 0 for value in sums)


def client_env(service: Service, key: str | None = None) -> dict[str, str]:
    """A client machine: the API's URL and key, and nothing of the deployment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DAGSTER_", "VIDEO_PIPELINES_"))}
    return {**env, API_URL_ENV: service.url, API_KEY_ENV: key or service.key}


def cli(service: Service, cwd: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["video-pipelines", *args], cwd=cwd, env=client_env(service, key), capture_output=True, text=True, timeout=600
    )


def test_seed_flow_through_the_cli_on_a_client_machine(service: Service, tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(seed_base()))
    (tmp_path / "dependent.json").write_text(json.dumps(seed_dependent(f"{service.audio}/spanish-cli.mp3")))

    done = cli(service, tmp_path, "submit", "base.json", "--wait")
    assert done.returncode == 0, done.stderr + service.deployment.log_tail()
    base = json.loads(done.stdout)
    assert base["status"] == "completed"

    done = cli(
        service, tmp_path, "submit", "dependent.json", "--base-execution-id", base["executionId"],
        "--webhook-url", service.receiver.url("/cli"), "--webhook-secret", WEBHOOK_SECRET,
        "--idempotency-key", "cli-order-1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dependent_id = json.loads(done.stdout)["executionId"]
    again = cli(
        service, tmp_path, "submit", "dependent.json", "--base-execution-id", base["executionId"],
        "--webhook-url", service.receiver.url("/cli"), "--webhook-secret", WEBHOOK_SECRET,
        "--idempotency-key", "cli-order-1",
    )  # fmt: skip
    assert json.loads(again.stdout) == {"executionId": dependent_id}
    # The same key for another request (no webhook this time) is refused, naming the key: the API's 422.
    other = cli(
        service, tmp_path, "submit", "dependent.json", "--base-execution-id", base["executionId"],
        "--idempotency-key", "cli-order-1",
    )  # fmt: skip
    assert other.returncode == 2 and "idempotency key 'cli-order-1'" in other.stderr, other.stderr

    [request] = service.receiver.wait_for("/cli", 1, timeout=240)
    done = cli(service, tmp_path, "status", dependent_id)
    assert done.returncode == 0, done.stderr
    dependent = json.loads(done.stdout)
    check_dependent(service, base, dependent, tone=650)
    check_webhook(request, dependent)

    done = cli(service, tmp_path, "deliveries", dependent_id)
    assert done.returncode == 0, done.stderr
    [delivery] = json.loads(done.stdout)
    assert delivery["webhookId"] == request.headers["webhook-id"] and delivery["state"] == "delivered"
    done = cli(service, tmp_path, "deliveries", "redeliver", delivery["webhookId"])
    assert done.returncode == 0, done.stderr
    assert service.receiver.wait_for("/cli", 2)[1].headers["webhook-id"] == delivery["webhookId"]

    # A variant waits while its base runs: still pending when canceled. The base must still be running
    # then: not reused from the first one (which would end within a second) and seconds of work.
    slow = seed_base()
    for job in slow["jobs"][:2]:
        job["params"].update(duration=20, resolution=360)
    (tmp_path / "slow_base.json").write_text(json.dumps({**slow, "cache": False}))
    fresh = json.loads(cli(service, tmp_path, "submit", "slow_base.json").stdout)["executionId"]
    waiting = json.loads(cli(service, tmp_path, "submit", "dependent.json", "--base-execution-id", fresh).stdout)[
        "executionId"
    ]
    done = cli(service, tmp_path, "cancel", waiting)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "canceled"
    with service.http() as http:  # the slow base has shown what it had to: its render would only take CPU from the rest
        assert http.post(f"/api/execute/{fresh}/cancel").status_code == 202

    # Nothing of a deployment was made or needed here.
    assert not (tmp_path / ".dagster_home").exists()


def test_cli_errors_over_http(service: Service, tmp_path: Path) -> None:
    plan = seed_base()
    plan["jobs"][2]["params"]["transition"] = "wipe"
    plan["jobs"][0]["params"]["duration"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(plan))
    done = cli(service, tmp_path, "submit", "bad.json")
    assert done.returncode == 2 and done.stdout == ""
    local = subprocess.run(
        ["video-pipelines", "validate", "bad.json"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert local.returncode == 2
    assert done.stderr == local.stderr  # the same messages as `validate`, node and field first
    assert done.stderr.splitlines()[1:] == [
        "  job1.params.duration: Input should be greater than or equal to 1 (got -1)",
        "  job3.params.transition: Input should be 'cut', 'crossfade' or 'fade' (got 'wipe')",
    ]

    done = cli(service, tmp_path, "status", "exec_does_not_exist")
    assert (done.returncode, done.stderr) == (2, f"error: no execution exec_does_not_exist at the API {service.url}\n")
    (tmp_path / "base.json").write_text(json.dumps(seed_base()))
    mine = json.loads(cli(service, tmp_path, "submit", "base.json").stdout)["executionId"]
    done = cli(service, tmp_path, "cancel", mine, key=service.other_key)  # another tenant: as if it did not exist
    assert (done.returncode, done.stderr) == (2, f"error: no execution {mine} at the API {service.url}\n")
    assert json.loads(cli(service, tmp_path, "status", mine).stdout)["status"] != "canceled"

    done = cli(service, tmp_path, "status", "exec_x", key="vp_not_a_key")
    assert done.returncode == 2 and API_KEY_ENV in done.stderr and "401" in done.stderr
    assert "vp_not_a_key" not in done.stderr


def test_the_cli_over_http_never_loads_dagster(service: Service, tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(seed_base()))
    code = (
        "import sys\n"
        "from video_pipelines.doors.cli import main\n"
        "code = main(['submit', 'base.json'])\n"
        "print(sorted(m for m in ('dagster', 'sqlalchemy') if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=client_env(service), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["executionId"].startswith("exec_")
    assert done.stderr.strip() == "[]"
