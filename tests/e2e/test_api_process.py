"""`video-pipelines serve` as a real process on 127.0.0.1 (no daemon: submissions stay pending).

Submit and status over real HTTP, and an event stream that follows a cancel as it happens.
With a real daemon running the plans: test_api_events.py and test_api.py; `video-pipelines dev`: test_dev.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.submissions import ApiKeys, SubmissionStore

from ..api_process import ApiServer, api_process

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "job1", "type": "generate", "params": {"prompt": "Scene 1", "duration": 1}, "output": "$job1"},
        {"id": "job2", "type": "merge", "params": {}, "dependsOn": ["job1"], "output": "$job2"},
    ]
}


@dataclass
class Served:
    server: ApiServer
    store: SubmissionStore
    key: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The API on an embedded default (SQLite) in tmp_path, and a key made with the operator's store."""
    monkeypatch.delenv("VIDEO_PIPELINES_DATABASE_URL", raising=False)
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    prepare_dagster_home(home)
    env = {"DAGSTER_HOME": str(home), "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS": "0.2"}
    with SubmissionStore.from_env(home) as store:
        _, key = ApiKeys(store).create("process test", tenant="acme")
        with api_process(env=env, logs=tmp_path / "logs") as server:
            yield Served(server, store, key)


def test_submit_and_status_over_real_http(served: Served) -> None:
    with served.http() as http:
        answer = http.post("/api/execute", content=json.dumps(PLAN), headers={"Idempotency-Key": "order-1"})
        assert answer.status_code == 202, answer.text
        execution_id = answer.json()["executionId"]
        again = http.post("/api/execute", json=PLAN, headers={"Idempotency-Key": "order-1"})
        assert again.json() == {"executionId": execution_id}

        status = http.get(f"/api/execute/{execution_id}/status")
        assert status.status_code == 200, status.text
        assert status.json()["status"] == "pending" and list(status.json()["jobs"]) == ["job1", "job2"]
        [submission] = served.store.newest(None)
        assert (submission.execution_id, submission.tenant, submission.idempotency_key) == (
            execution_id, "acme", "order-1"
        )  # fmt: skip

        refused = http.post("/api/execute", content=b"{not json")
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
        assert http.get("/nowhere").json()["status"] == 404
        assert httpx.get(f"{served.server.url}/openapi.json").json()["info"]["title"] == "video-pipelines"
    # No daemon here: /health says so, and names it.
    health = httpx.get(f"{served.server.url}/health")
    assert health.status_code == 503 and health.json()["daemon"] == "down" and health.json()["database"] == "ok"
    assert "video-pipelines API on" in served.server.log_tail()


def test_the_event_stream_follows_a_cancel_as_it_happens(served: Served) -> None:
    with served.http() as http:
        execution_id = http.post("/api/execute", json=PLAN).json()["executionId"]
        seen: list[tuple[str, dict[str, Any]]] = []
        canceled = False
        with http.stream("GET", f"/api/execute/{execution_id}/events") as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line.removeprefix("data: "))))
                    if len(seen) == 1:  # the current state came first: now cancel, from another connection
                        with served.http() as other:
                            assert other.post(f"/api/execute/{execution_id}/cancel").status_code == 202
                        canceled = True
    assert canceled
    assert [(kind, data.get("nodeId"), data["status"]) for kind, data in seen] == [
        ("status", None, "pending"),
        ("node", "job1", "skipped"),
        ("node", "job2", "skipped"),
        ("execution", None, "canceled"),
    ]
    assert seen[-1][1]["executionId"] == execution_id  # and the stream ended by itself after it
