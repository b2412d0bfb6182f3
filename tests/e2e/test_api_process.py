"""`video-pipelines serve` as a real process on 127.0.0.1 (no daemon: submissions stay pending).

Submit and status over real HTTP, and an event stream that follows a cancel as it happens;
and `video-pipelines dev`, which starts the API beside dagster dev (webserver and daemon).
With a real daemon running the plans: test_api_events.py and test_api.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.submissions import ApiKeys, SubmissionStore

from ..api_process import ApiServer, api_process
from ..conftest import free_port

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


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still there."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_dev_serves_the_api_beside_the_webserver_and_daemon_and_stops_them_all(tmp_path: Path) -> None:
    web_port, api_port = free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DAGSTER_HOME", "VIDEO_PIPELINES_DATABASE_URL", "VIDEO_PIPELINES_STORAGE_URL")
    }
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        dev = subprocess.Popen(
            ["video-pipelines", "dev", "--port", str(web_port), "--api-port", str(api_port)],
            cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        health = None
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5)
                webserver = httpx.get(f"http://127.0.0.1:{web_port}/server_info", timeout=5)
                if health.status_code == 200 and webserver.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        text = log.read_text(errors="replace")
        assert health is not None and health.status_code == 200, text[-4000:]
        assert f"API on http://127.0.0.1:{api_port}" in text  # its URL, printed
        assert health.json() == {"database": "ok", "daemon": "ok", "storage": "ok"}  # the daemon beats
        assert (tmp_path / ".dagster_home" / "video_pipelines.db").exists()

        dev.send_signal(signal.SIGTERM)  # passed on to dagster dev and the API; all of them stop
        assert dev.wait(timeout=120) == 0, log.read_text(errors="replace")[-4000:]
        # What dagster dev started (its code server) follows it out within moments.
        deadline = time.monotonic() + 60
        while group_alive(dev.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = subprocess.run(["ps", "-o", "pid,args", "-g", str(dev.pid)], capture_output=True, text=True).stdout
        assert not group_alive(dev.pid), left
    finally:
        if group_alive(dev.pid):
            os.killpg(dev.pid, signal.SIGKILL)
        dev.wait()
