"""Hostile input to real processes: the CLI refuses each limit with exit 2; a real `video-pipelines serve` on
PostgreSQL takes every hostile request on one keep-alive connection, then still serves a good one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.submissions import ApiKeys, SubmissionStore

from ..api_process import api_process
from ..dagster.test_input_limits import HOSTILE_PATHS, PLAN, hostile_bodies
from ..unit.test_input_limits import MAX_NODES_ENV, chain, gen


def local_port(response: httpx.Response) -> int:
    """The client side's port of the connection that carried `response` (one port: one connection)."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


@pytest.mark.postgres
def test_a_real_server_keeps_the_connection_through_every_refusal(tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "dagster_home"
    env = {"DAGSTER_HOME": str(home), "VIDEO_PIPELINES_DATABASE_URL": postgres_url, MAX_NODES_ENV: "1000"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        prepare_dagster_home(home)
        store = SubmissionStore.from_env(home)
    with store, api_process(env=env, logs=tmp_path / "logs") as server:
        _, key = ApiKeys(store).create("limits", tenant="acme")
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, limits=limits, timeout=60) as http:
            ports: set[int] = set()
            for name, (body, status, _) in hostile_bodies().items():
                response = http.post("/api/execute", content=body)
                assert response.status_code == status, (name, response.text[:300])
                ports.add(local_port(response))
            too_large = http.post("/api/execute", content=b"[" + b" " * 1024 * 1024 + b"]")
            assert too_large.status_code == 413, too_large.text[:300]
            ports.add(local_port(too_large))
            for method, path in HOSTILE_PATHS:
                response = http.request(method, path)
                assert response.status_code == 400, (path, response.text[:300])
                ports.add(local_port(response))
            good = http.post("/api/execute", json=PLAN, headers={"Idempotency-Key": "after-all"})
            assert good.status_code == 202, good.text
            ports.add(local_port(good))
            status = http.get(f"/api/execute/{good.json()['executionId']}/status")
            assert status.status_code == 200 and status.json()["status"] == "pending"
            ports.add(local_port(status))
        assert len(ports) == 1, f"{len(ports)} connections: the server dropped one"
        assert [submission.idempotency_key for submission in store.newest(None)] == ["after-all"]
        assert "Traceback" not in server.log_tail(200_000)


def cli(*args: str, stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, outside any deployment (no DAGSTER_HOME, no VIDEO_PIPELINES_ setting)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    return subprocess.run(
        ["video-pipelines", *args], input=stdin, capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


def test_the_cli_refuses_each_limit_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    for text, expected in (
        (json.dumps({"jobs": [gen(f"g{i}") for i in range(501)]}), "501 jobs, more than the 500"),
        ("[" * 100_000, "nested deeper than 64 levels"),
        ('{"jobs": [{"id": "a", "type": "generateVideo", "params": {"seed": ' + "9" * 4301 + "}}]}", "number longer"),
        (json.dumps({"jobs": [gen("a", prompt="a\x00b")]}), "a.params.prompt: holds a NUL character"),
    ):
        done = cli("validate", "-", stdin=text, cwd=tmp_path)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    done = cli("validate", "--json", "-", stdin=json.dumps({"jobs": chain(500)[::-1]}), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [node["id"] for node in json.loads(done.stdout)["nodes"]][:2] == ["n0", "n1"]
