"""End to end: `GET /api/execute/{id}/events` of `video-pipelines serve` while a real daemon runs the plan.

PostgreSQL storage, dagster-webserver and dagster-daemon as real processes (`processes.py`),
the API as a real process (`api_process.py`); the stream is read over real HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from video_pipelines.submissions import ApiKeys, SubmissionStore

from ..api_process import ApiServer, api_process
from ..processes import DagsterDeployment, dagster_deployment, deployment_database

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-api_events")]

SECRET_KEY = "e2e-api-events-passphrase"
# Work enough that each node runs for many poll intervals (0.1 s here): a 1 s 90p clip runs for ~0.15 s.
PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "clip", "type": "generate", "params": {"prompt": "Scene 1", "duration": 4, "resolution": 480}},
        {"id": "tall", "type": "reframe", "params": {"aspectRatio": "9:16", "mode": "blur"}, "dependsOn": ["clip"]},
    ]
}


@dataclass
class Service:
    deployment: DagsterDeployment
    server: ApiServer
    key: str

    def http(self) -> httpx.Client:
        timeout = httpx.Timeout(30, read=120)
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout)

    def logs(self) -> str:
        return self.deployment.log_tail()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("e2e_api_events")
    env = {"VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY, "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS": "0.1"}
    with (
        deployment_database() as database_url,
        dagster_deployment(tmp, database_url, extra_env=env, webserver=False) as deployment,
        SubmissionStore(database_url, secret_key=SECRET_KEY) as store,
    ):
        _, key = ApiKeys(store).create("events", tenant="acme")
        with api_process(env=deployment.env, logs=deployment.logs) as server:
            yield Service(deployment, server, key)


def read_events(http: httpx.Client, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the stream, until the server ends it."""
    events: list[tuple[str, dict[str, Any]]] = []
    with http.stream("GET", f"/api/execute/{execution_id}/events") as stream:
        assert stream.status_code == 200, stream.read()
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def node_histories(events: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """Each node's states in the order the stream showed them (from the first status, then node events)."""
    kind, first = events[0]
    assert kind == "status"
    histories = {node_id: [node["status"]] for node_id, node in first["jobs"].items()}
    for kind, data in events[1:]:
        if kind == "node":
            histories[data["nodeId"]].append(data["status"])
    return histories


def test_the_stream_shows_each_node_and_the_execution_change_until_the_end(service: Service) -> None:
    with service.http() as http:
        answer = http.post("/api/execute", json=PLAN)
        assert answer.status_code == 202, answer.text
        execution_id = answer.json()["executionId"]
        try:
            events = read_events(http, execution_id)
        except Exception:
            print(service.logs())
            raise
        final = http.get(f"/api/execute/{execution_id}/status").json()
    assert final["status"] == "completed", service.logs()
    seen = [(kind, data.get("nodeId"), data["status"]) for kind, data in events]
    assert node_histories(events) == {
        "clip": ["pending", "running", "completed"],
        "tall": ["pending", "running", "completed"],
    }, seen
    assert [status for kind, _, status in seen if kind == "execution"] == ["processing", "completed"], seen
    # The terminal event is the last, and it is the final status document.
    assert events[-1] == ("execution", final)
    clip_done = next(d for k, d in events if k == "node" and d["nodeId"] == "clip" and d["status"] == "completed")
    assert clip_done["previousStatus"] == "running" and clip_done["result"] == final["jobs"]["clip"]["result"]

    # With the daemon beating, the deployment is healthy (once each of its daemons has beaten a first time).
    deadline = time.monotonic() + 90
    while (health := httpx.get(f"{service.server.url}/health", timeout=30)).status_code != 200:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert health.json() == {"database": "ok", "daemon": "ok", "storage": "ok"}, health.text


def test_a_late_client_gets_the_current_state_then_the_stream_ends(service: Service) -> None:
    with service.http() as http:
        execution_id = http.post("/api/execute", json=PLAN).json()["executionId"]
        with http.stream("GET", f"/api/execute/{execution_id}/events") as stream:
            for _ in stream.iter_lines():
                pass  # the first stream runs to the end
        final = http.get(f"/api/execute/{execution_id}/status").json()
        assert final["status"] == "completed", service.logs()

        late = read_events(http, execution_id)
    assert late == [("status", final)]
