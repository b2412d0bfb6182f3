"""Hostile input at the HTTP API in-process (FastAPI's TestClient on PostgreSQL, which refuses NUL in text): a clear 400/422, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.submissions import ApiKeys, SubmissionStore

from ..unit.test_input_limits import MAX_NODES_ENV, PROBLEM_KEYS, chain, cycle, gen, nested

PLAN: dict[str, Any] = {"jobs": [gen("a")]}


def problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == response.status_code
    return body


class Api:
    def __init__(self, client: TestClient, store: SubmissionStore, key: str) -> None:
        self.client = client
        self.store = store
        self.headers = {"Authorization": f"Bearer {key}"}

    def rows(self) -> int:
        return len(self.store.newest(None, limit=1000))


@pytest.fixture
def api(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The app on a fresh PostgreSQL database (store and Dagster instance), 5xx kept as answers."""
    monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", postgres_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv(MAX_NODES_ENV, "1000")
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS", raising=False)
    prepare_dagster_home()
    app = create_app(ApiSettings())
    with TestClient(app, raise_server_exceptions=False) as client:
        store = app.state.api.store
        _, key = ApiKeys(store).create("limits", tenant="acme")
        yield Api(client, store, key)


def hostile_bodies() -> dict[str, tuple[bytes, int, str]]:
    """name -> (body, the status it must get, words its detail must hold), as the issue measured them."""
    deep_params = json.dumps({"jobs": [gen("a", x=nested(700))]})
    too_deep_params = json.dumps({"jobs": [gen("a", x=nested(32))]})
    return {
        "100,000 [": (b"[" * 100_000, 400, "nested deeper than 64 levels"),
        '50,000 {"a":': (b'{"a":' * 50_000, 400, "nested deeper than 64 levels"),
        "a 4,301-digit number": (b'{"jobs": [], "n": ' + b"1" * 4301 + b"}", 400, "a number longer than 100"),
        "params 700 deep": (deep_params.encode(), 400, "nested deeper than 64 levels"),
        "params 33 deep": (too_deep_params.encode(), 422, "a.params: nested more than 32 levels"),
        "a 1,000-node cycle": (json.dumps({"jobs": cycle(1000)}).encode(), 422, "dependency cycle n0 -> n999"),
        "1,001 nodes": (json.dumps({"jobs": chain(1001)}).encode(), 422, "more than the 1000 a plan may have"),
        "NUL in baseExecutionId": (
            json.dumps({**PLAN, "baseExecutionId": "exec_\x00"}).encode(),
            422,
            "plan.baseExecutionId: holds a NUL",
        ),
        "NUL in a webhook URL": (
            json.dumps({**PLAN, "webhook": {"url": "https://hooks.example.com/\x00"}}).encode(),
            422,
            "plan.webhook.url: holds a NUL",
        ),
        "NUL in a prompt": (json.dumps({"jobs": [gen("a", prompt="\x00")]}).encode(), 422, "a.params.prompt"),
    }


HOSTILE_PATHS = [
    ("GET", "/api/execute/exec_%00/status"),
    ("GET", "/api/execute/exec_%00/events"),
    ("GET", "/api/execute/exec_%00/deliveries"),
    ("POST", "/api/execute/exec_%00/cancel"),
    ("POST", "/api/execute/exec_%00/retry"),
    ("POST", "/api/execute/exec_1/deliveries/msg_%00/redeliver"),
    ("GET", "/api/executions?cursor=exec_%00"),
    ("GET", "/api/executions?cursor=%00&limit=5"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(hostile_bodies()))
def test_each_hostile_body_is_a_problem_and_stores_nothing(api: Api, name: str) -> None:
    body, status, words = hostile_bodies()[name]
    response = api.client.post("/api/execute", content=body, headers=api.headers)
    found = problem(response, status)
    assert words in found["detail"], found["detail"][:300]
    if status == 422:
        assert found["errors"] and all(set(error) == {"node", "field", "message"} for error in found["errors"])
    assert api.rows() == 0


@pytest.mark.postgres
def test_a_900_node_chain_listed_last_first_is_accepted(api: Api) -> None:
    for jobs in (chain(900), chain(900)[::-1]):
        response = api.client.post("/api/execute", json={"jobs": jobs}, headers=api.headers)
        assert response.status_code == 202, response.text[:300]
    assert api.rows() == 2


@pytest.mark.postgres
@pytest.mark.parametrize(("method", "path"), HOSTILE_PATHS)
def test_a_nul_in_a_path_or_query_is_400_before_any_query(api: Api, method: str, path: str) -> None:
    found = problem(api.client.request(method, path, headers=api.headers), 400)
    assert "NUL character (%00)" in found["detail"]
    # The same routes still answer a plain missing id as before.
    assert api.client.get("/api/execute/exec_missing/status", headers=api.headers).status_code == 404
