"""The HTTP API in-process (FastAPI's TestClient), on a real Dagster instance and submission store in tmp_path.

Layers: the pure parts (where a plan problem is, literal destinations, settings, token
buckets, the event diff); then the app with its real lifespan: authentication, every bad
input (each a problem+json, nothing stored), idempotency, tenant isolation, redelivery,
the rate limit, /health and the docs. The same routes over a real `video-pipelines serve`
are in e2e/test_api_process.py, and with a real daemon in e2e/test_api_events.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from dagster._daemon.types import DaemonHeartbeat
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from video_pipelines import executions
from video_pipelines.api import ApiSettings, RateLimit, create_app
from video_pipelines.api.routes import ApiState, execution_events, status_changes
from video_pipelines.api.settings import MAX_BODY_ENV, RATE_LIMIT_ENV, TokenBuckets
from video_pipelines.errors import PlanValidationError, UsageError
from video_pipelines.executions import ExecutionStatus, NodeStatus
from video_pipelines.executions.destinations import destination_problems, literal_address
from video_pipelines.net import js_json_bytes
from video_pipelines.net.guard import parse_allowed_hosts
from video_pipelines.plan import parse_plan
from video_pipelines.plan.problems import PlanProblem, locate
from video_pipelines.plan.results import VideoResult
from video_pipelines.submissions import ApiKeys, SubmissionStore
from video_pipelines.submissions.breakers import BreakerSettings, ProviderCircuits
from video_pipelines.submissions.schema import SUBMISSIONS_TABLE, WEBHOOK_DELIVERIES_TABLE
from video_pipelines.vocabulary import ExecutionState, NodeState

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}
PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "job1", "type": "generate", "params": {"prompt": "Scene 1", "duration": 1}, "output": "$job1"},
        {"id": "job2", "type": "generate", "params": {"prompt": "Scene 2", "duration": 1}, "output": "$job2"},
        {"id": "job3", "type": "merge", "params": {"transition": "crossfade"}, "dependsOn": ["job1", "job2"]},
    ]
}
HOOK = {"url": "https://hooks.example.com/video", "secret": "sk-test-9f1"}


def problem(response: Any, status: int) -> dict[str, Any]:
    """The RFC 9457 body of an error answer, checked: its status, its media type, its members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status, body
    assert body["instance"] == response.request.url.path
    assert "Traceback" not in response.text
    return body


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "node", "field", "message"),
    [
        ("job3.params.transition: must be one of cut", "job3", "params.transition", "must be one of cut"),
        ("job3: unknown field 'x'", "job3", None, "unknown field 'x'"),
        ("job-3_b.dependsOn: unknown dependency 'z'", "job-3_b", "dependsOn", "unknown dependency 'z'"),
        ("plan.webhook.url: must be an http(s) URL", None, "plan.webhook.url", "must be an http(s) URL"),
        ("plan: dependency cycle a -> b -> a", None, "plan", "dependency cycle a -> b -> a"),
        ("jobs[2].id: missing (1-64 letters)", None, "jobs[2].id", "missing (1-64 letters)"),
        ("jobs[0]: each job must be an object", None, "jobs[0]", "each job must be an object"),
        (
            "plan is not valid JSON: Expecting value at line 1",
            None,
            None,
            "plan is not valid JSON: Expecting value at line 1",
        ),
        (
            "plan must be a JSON object with 'jobs', got list",
            None,
            None,
            "plan must be a JSON object with 'jobs', got list",
        ),
    ],
)
def test_a_problem_names_its_node_and_field_and_reads_back_as_written(
    text: str, node: str | None, field: str | None, message: str
) -> None:
    located = locate(text)
    assert located == PlanProblem(node, field, message)
    assert str(located) == text
    assert located.to_wire() == {"node": node, "field": field, "message": message}


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://10.0.0.5/a.mp3", "10.0.0.5"),
        ("https://[::1]:8443/hook", "::1"),
        ("http://127.1/a.mp3", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),
        ("https://example.com/a.mp3", None),
        ("http://localhost:8080/", None),
        ("http://1password.example.com/", None),
        ("not a url", None),
    ],
)
def test_literal_addresses_are_read_without_dns(url: str, address: str | None) -> None:
    found = literal_address(url)
    assert (str(found) if found is not None else None) == address


def test_destination_problems_name_the_field_and_honour_the_allowed_hosts() -> None:
    plan = parse_plan(
        {
            "jobs": [
                {"id": "v", "type": "generate", "params": {"prompt": "p"}},
                {"id": "s", "type": "lipSync", "params": {"audioUrl": "http://192.168.1.9/a.mp3"}, "dependsOn": ["v"]},
            ],
            "webhook": {"url": "http://169.254.169.254/latest/meta-data"},
        }
    )
    nothing = parse_allowed_hosts(None)
    assert destination_problems(plan, nothing) == [
        "s.params.audioUrl: refused: 192.168.1.9 is not a public address (private); "
        "add it to VIDEO_PIPELINES_ALLOWED_HOSTS to allow it",
        "plan.webhook.url: refused: 169.254.169.254 is a cloud metadata endpoint; "
        "only a VIDEO_PIPELINES_ALLOWED_HOSTS entry naming that exact address allows it",
    ]
    # A broad CIDR allows the private address but never the metadata endpoint; the exact address does.
    assert [p.split(":")[0] for p in destination_problems(plan, parse_allowed_hosts("0.0.0.0/0"))] == [
        "plan.webhook.url"
    ]
    assert destination_problems(plan, parse_allowed_hosts("192.168.0.0/16,169.254.169.254")) == []


def test_settings_from_the_environment() -> None:
    assert ApiSettings.from_env({}) == ApiSettings()
    assert ApiSettings().max_body_bytes == 1024 * 1024 and ApiSettings().rate_limit is None
    env = {MAX_BODY_ENV: "2048", RATE_LIMIT_ENV: "120/minute", "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS": "0.25"}
    settings = ApiSettings.from_env(env, host="::1", port=9000)
    assert (settings.max_body_bytes, settings.rate_limit, settings.events_poll_seconds) == (
        2048, RateLimit(120, 60.0), 0.25
    )  # fmt: skip
    assert settings.url == "http://[::1]:9000"
    assert ApiSettings.from_env({RATE_LIMIT_ENV: "off"}).rate_limit is None
    assert RateLimit.parse("10 / seconds") == RateLimit(10, 1.0) and RateLimit.parse("1/Hour").per_second == 1 / 3600
    for bad in ({RATE_LIMIT_ENV: "120 per minute"}, {RATE_LIMIT_ENV: "0/minute"}, {MAX_BODY_ENV: "1MB"}):
        with pytest.raises(UsageError, match=next(iter(bad))):
            ApiSettings.from_env(bad)
    with pytest.raises(UsageError, match="VIDEO_PIPELINES_ALLOWED_HOSTS"):
        ApiSettings.from_env({"VIDEO_PIPELINES_ALLOWED_HOSTS": "http://x/"})


def test_token_buckets_refill_at_the_rate_per_key() -> None:
    now = [1000.0]
    buckets = TokenBuckets(RateLimit(2, 60.0), clock=lambda: now[0])
    assert buckets.take("a") is None and buckets.take("a") is None
    assert buckets.take("a") == 30  # one token comes back every 30 s
    assert buckets.take("b") is None  # another key has its own bucket
    now[0] += 29.5
    assert buckets.take("a") == 1
    now[0] += 0.5
    assert buckets.take("a") is None and buckets.take("a") == 30


def status_of(state: ExecutionState, **nodes: NodeState) -> ExecutionStatus:
    video = VideoResult("file:///v.mp4", 1.0, 160, 90, "16:9", 10, "0" * 64)
    return ExecutionStatus(
        "exec_1",
        state,
        {node_id: NodeStatus(node, video if node.has_result else None) for node_id, node in nodes.items()},
    )


P, R, C, F, S = NodeState.PENDING, NodeState.RUNNING, NodeState.COMPLETED, NodeState.FAILED, NodeState.SKIPPED


def test_status_changes_are_node_events_in_plan_order_then_the_execution() -> None:
    before = status_of(ExecutionState.PROCESSING, a=R, b=P)
    after = status_of(ExecutionState.FAILED, a=C, b=F)
    events = status_changes(before, after)
    assert [(e.kind, e.data.get("nodeId"), e.data["status"]) for e in events] == [
        ("node", "a", "completed"), ("node", "b", "failed"), ("execution", None, "failed")
    ]  # fmt: skip
    assert events[0].data["previousStatus"] == "running" and events[0].data["result"]["url"] == "file:///v.mp4"
    assert events[2].data == after.to_wire() and events[2].is_terminal and not events[0].is_terminal
    assert status_changes(after, after) == []


def parse_stream(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of each event of a text/event-stream; comments are left out."""
    found = []
    for block in raw.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_the_event_stream_starts_with_the_current_state_and_ends_after_the_terminal_one() -> None:
    readings = iter(
        [
            status_of(ExecutionState.PENDING, a=P, b=P),  # no change: nothing sent, a keep-alive after 2 polls
            status_of(ExecutionState.PROCESSING, a=R, b=P),
            status_of(ExecutionState.PROCESSING, a=C, b=R),
            status_of(ExecutionState.COMPLETED, a=C, b=C),
        ]
    )
    clock = [0.0]

    async def read() -> ExecutionStatus:
        clock[0] += 1.0
        return next(readings)

    async def connected() -> bool:
        return False

    async def collect() -> list[bytes]:
        stream = execution_events(
            status_of(ExecutionState.PENDING, a=P, b=P),
            read,
            poll_seconds=0,
            keepalive_seconds=1.0,
            disconnected=connected,
            clock=lambda: clock[0],
        )
        return [chunk async for chunk in stream]

    chunks = anyio.run(collect)
    assert b": keep-alive\n\n" in chunks
    events = parse_stream(b"".join(chunks))
    assert [(kind, data.get("nodeId"), data["status"]) for kind, data in events] == [
        ("status", None, "pending"),
        ("node", "a", "running"),
        ("execution", None, "processing"),
        ("node", "a", "completed"),
        ("node", "b", "running"),
        ("node", "b", "completed"),
        ("execution", None, "completed"),
    ]
    assert b"id: 1\n" in chunks[0] and b"id: 7\n" in chunks[-1]
    # Written as the status GET and the webhooks are: whole seconds without '.0' (JSON.stringify's form).
    assert b'"duration":1,' in chunks[-1] and b'"duration":1.0' not in b"".join(chunks)


def test_the_event_stream_ends_when_a_reading_fails(caplog: pytest.LogCaptureFixture) -> None:
    async def read() -> ExecutionStatus:
        raise sa.exc.OperationalError("SELECT", {}, Exception("the database went away"))

    async def connected() -> bool:
        return False

    async def collect() -> list[bytes]:
        first = status_of(ExecutionState.PROCESSING, a=R)
        stream = execution_events(first, read, poll_seconds=0, keepalive_seconds=15, disconnected=connected)
        return [chunk async for chunk in stream]

    chunks = anyio.run(collect)
    assert [kind for kind, _ in parse_stream(b"".join(chunks))] == ["status"]
    assert "the database went away" in caplog.text


def test_the_event_stream_stops_reading_when_the_client_has_gone() -> None:
    reads: list[int] = []

    async def read() -> ExecutionStatus:
        reads.append(1)
        return status_of(ExecutionState.PROCESSING, a=R)

    async def gone() -> bool:
        return True

    async def collect() -> list[bytes]:
        first = status_of(ExecutionState.PROCESSING, a=R)
        stream = execution_events(first, read, poll_seconds=0, keepalive_seconds=15, disconnected=gone)
        return [chunk async for chunk in stream]

    assert len(anyio.run(collect)) == 1 and reads == []


# --- the app ---------------------------------------------------------------------------------


@dataclass
class Api:
    client: TestClient
    state: ApiState

    @property
    def store(self) -> SubmissionStore:
        return self.state.store

    def key(self, tenant: str = "acme") -> dict[str, str]:
        _, key = ApiKeys(self.store).create(f"key of {tenant}", tenant=tenant)
        return {"Authorization": f"Bearer {key}"}

    def rows(self, table: str = SUBMISSIONS_TABLE) -> int:
        with self.store.engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


ApiFactory = Callable[..., Api]


@pytest.fixture
def make_api(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiFactory]:
    """Start the app (its lifespan opens the store and instance of DAGSTER_HOME) with settings changed as asked."""
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS", raising=False)
    with ExitStack() as stack:

        def make(*, database_url: str | None = None, raise_server_exceptions: bool = True, **changes: Any) -> Api:
            if database_url is not None:
                monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", database_url)
            app = create_app(replace(ApiSettings(), **changes))
            client = stack.enter_context(TestClient(app, raise_server_exceptions=raise_server_exceptions))
            return Api(client, app.state.api)

        yield make


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    return make_api()


@pytest.fixture
def api_on_db(make_api: ApiFactory, db_url: str) -> Api:
    """The app on SQLite, then on a fresh PostgreSQL database (store and Dagster instance both)."""
    return make_api(database_url=None if db_url.startswith("sqlite") else db_url)


def submit(api: Api, headers: dict[str, str], plan: Any = PLAN, **kwargs: Any) -> str:
    response = api.client.post("/api/execute", json=plan, headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    assert list(response.json()) == ["executionId"]
    execution_id: str = response.json()["executionId"]
    return execution_id


def test_a_submission_is_stored_and_its_status_is_the_status_document(api: Api) -> None:
    acme = api.key()
    execution_id = submit(api, acme, {**PLAN, "webhook": HOOK, "priority": "high"})
    [submission] = api.store.newest(None)
    assert (submission.execution_id, submission.tenant, submission.priority) == (execution_id, "acme", "high")
    assert "secret" not in json.dumps(submission.plan) and api.store.webhook_secret(execution_id) == HOOK["secret"]

    response = api.client.get(f"/api/execute/{execution_id}/status", headers=acme)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    # Exactly the document of `video-pipelines status`: the response model drops nothing, adds nothing.
    assert response.json() == executions.execution_status(api.state.records, api.store, execution_id).to_wire()
    assert response.json()["status"] == "pending" and list(response.json()["jobs"]) == ["job1", "job2", "job3"]


def test_a_traceparent_header_puts_the_execution_in_the_callers_trace(api: Api) -> None:
    acme = api.key()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    execution_id = submit(api, {**acme, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert api.client.get(f"/api/execute/{execution_id}/status", headers=acme).json()["traceId"] == trace_id
    other = submit(api, acme)
    assert api.client.get(f"/api/execute/{other}/status", headers=acme).json()["traceId"] not in (None, trace_id)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/execute"),
        ("GET", "/api/execute/exec_x/status"),
        ("POST", "/api/execute/exec_x/cancel"),
        ("GET", "/api/execute/exec_x/events"),
        ("GET", "/api/executions"),
        ("GET", "/api/execute/exec_x/deliveries"),
        ("POST", "/api/execute/exec_x/deliveries/msg_exec_x_completed/redeliver"),
        ("GET", "/api/execute/exec_x/logs"),
        ("GET", "/api/costs"),
        ("GET", "/api/costs/suggestions"),
        ("POST", "/api/executions/retry"),
        ("GET", "/api/workers"),
        ("GET", "/api/queue"),
    ],
)
def test_every_api_route_needs_a_key(api: Api, method: str, path: str) -> None:
    body = problem(api.client.request(method, path, json=PLAN), 401)
    assert "api-keys create" in body["detail"]
    assert api.client.request(method, path).headers["www-authenticate"] == "Bearer"


def test_unknown_revoked_and_non_bearer_keys_are_401(api: Api) -> None:
    created, key = ApiKeys(api.store).create("soon revoked", tenant="acme")
    assert api.client.get("/api/executions", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    ApiKeys(api.store).revoke(created.key_id)
    for authorization in (f"Bearer {key}", "Bearer vp_not_a_key", f"Basic {key}", "Bearer ", key):
        response = api.client.get("/api/executions", headers={"Authorization": authorization})
        body = problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert key not in response.text and "vp_not_a_key" not in body["detail"]


def test_malformed_json_is_400_and_nothing_is_stored(api: Api) -> None:
    acme = api.key()
    for content in (b'{"jobs": [', b"", b"\xff\xfe not utf-8 \x80", b"{'jobs': []}"):
        body = problem(api.client.post("/api/execute", content=content, headers=acme), 400)
        assert body["detail"].startswith("the body is not valid JSON"), body
    assert api.rows() == 0


def test_an_invalid_plan_is_422_with_every_problem_as_validate_reports_it(api: Api) -> None:
    plan = json.loads(json.dumps(PLAN))
    plan["jobs"][2]["params"]["transition"] = "wipe"
    plan["jobs"][0]["params"]["duration"] = -1
    plan["jobs"][1]["params"]["colour"] = "red"
    body = problem(api.client.post("/api/execute", json=plan, headers=api.key()), 422)
    assert body["type"] == "tag:video-pipelines,2025:invalid-plan" and body["title"] == "Invalid plan"
    with pytest.raises(PlanValidationError) as raised:
        executions.admit(plan)
    # The same problems as `validate`, in its order, each split into node, field and message.
    assert [str(PlanProblem(**error)) for error in body["errors"]] == raised.value.problems
    assert {(e["node"], e["field"]) for e in body["errors"]} >= {
        ("job1", "params.duration"), ("job2", "params.colour"), ("job3", "params.transition")
    }  # fmt: skip
    for not_a_plan in ([], {"jobs": []}, {"jobs": [{"id": "a", "type": "teleport"}]}, "text", {**PLAN, "webhook": 1}):
        problem(api.client.post("/api/execute", json=not_a_plan, headers=api.key()), 422)
    assert api.rows() == 0


def test_a_literal_private_destination_is_422_unless_allowed(make_api: ApiFactory) -> None:
    api = make_api(allowed_hosts=parse_allowed_hosts("127.0.0.1"))
    acme = api.key()
    lip_sync = {"id": "s", "type": "lipSync", "params": {"audioUrl": "http://10.1.2.3/a.mp3"}, "dependsOn": ["job3"]}
    cases = {
        "s.params.audioUrl": {"jobs": [*PLAN["jobs"], lip_sync]},
        "plan.webhook.url": {**PLAN, "webhook": {"url": "http://169.254.169.254/latest/meta-data/"}},
    }
    for field, plan in cases.items():
        body = problem(api.client.post("/api/execute", json=plan, headers=acme), 422)
        [error] = body["errors"]
        assert f"{error['node']}.{error['field']}".removeprefix("None.") == field, error
        assert "refused" in error["message"] and "VIDEO_PIPELINES_ALLOWED_HOSTS" in error["message"]
    assert api.rows() == 0
    # Allowed by the operator; and a name is not resolved here (it is checked when it is fetched).
    submit(api, acme, {**PLAN, "webhook": {"url": "http://127.0.0.1:9/hook"}})
    submit(api, acme, {**PLAN, "webhook": {"url": "http://localhost:9/hook"}})
    assert api.rows() == 2


def test_a_body_over_the_limit_is_413_declared_or_streamed(make_api: ApiFactory) -> None:
    api = make_api(max_body_bytes=2000)
    acme = api.key()
    big = {**PLAN, "jobs": [*PLAN["jobs"], {"id": "pad", "type": "generate", "params": {"prompt": "x" * 3000}}]}
    body = problem(api.client.post("/api/execute", json=big, headers=acme), 413)
    assert "2000 bytes" in body["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes received are counted
        text = json.dumps(big).encode()
        yield from (text[i : i + 500] for i in range(0, len(text), 500))

    response = api.client.post("/api/execute", content=chunks(), headers={**acme, "Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    problem(response, 413)
    assert api.rows() == 0
    submit(api, acme)  # under the limit


def test_unknown_routes_wrong_methods_and_bad_parameters_are_problems(api: Api) -> None:
    assert "/docs" in problem(api.client.get("/api/nothing-here"), 404)["detail"]
    problem(api.client.get("/"), 404)
    response = api.client.delete("/api/execute", headers=api.key())
    assert problem(response, 405)["detail"] == "DELETE is not allowed on /api/execute; use POST"
    assert response.headers["allow"] == "POST"
    problem(api.client.put("/health"), 405)
    acme = api.key()
    for query in ("limit=abc", "limit=0", "limit=101", "status=running"):
        assert query.split("=")[0] in problem(api.client.get(f"/api/executions?{query}", headers=acme), 400)["detail"]
    body = problem(api.client.post("/api/execute", json=PLAN, headers={**acme, "Idempotency-Key": "k" * 300}), 400)
    assert "idempotency key" in body["detail"]
    assert api.rows() == 0


def test_an_unexpected_failure_is_a_500_problem_without_a_traceback(make_api: ApiFactory) -> None:
    api = make_api(raise_server_exceptions=False)
    acme = api.key()
    with api.store.engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {SUBMISSIONS_TABLE}"))
    response = api.client.post("/api/execute", json=PLAN, headers=acme)
    body = problem(response, 500)
    assert body["detail"] == "the server failed to answer this request; the error is in its log"
    assert "sqlite" not in response.text.lower() and SUBMISSIONS_TABLE not in response.text


def test_the_same_idempotency_key_returns_the_same_execution_and_stores_one_row(api_on_db: Api) -> None:
    api = api_on_db
    acme, globex = api.key("acme"), api.key("globex")
    first = submit(api, {**acme, "Idempotency-Key": "order-42"})
    # The same plan in other bytes (another key order, whitespace) is the same request.
    reordered = json.dumps(json.loads(json.dumps(PLAN, sort_keys=True)), indent=3, sort_keys=True)
    again = api.client.post("/api/execute", content=reordered, headers={**acme, "Idempotency-Key": "order-42"})
    assert again.status_code == 202 and again.json() == {"executionId": first} and api.rows() == 1
    # Keys are per tenant: another tenant's order-42 is another execution.
    assert submit(api, {**globex, "Idempotency-Key": "order-42"}, {**PLAN, "priority": "low"}) != first
    assert submit(api, acme) != first and api.rows() == 3


def test_an_idempotency_key_used_again_for_another_plan_is_422_naming_it(api_on_db: Api) -> None:
    api = api_on_db
    acme = api.key("acme")
    first = submit(api, {**acme, "Idempotency-Key": "order-42"})
    for other in ({**PLAN, "priority": "low"}, {**PLAN, "webhook": HOOK}, {"jobs": PLAN["jobs"][:1]}):
        response = api.client.post("/api/execute", json=other, headers={**acme, "Idempotency-Key": "order-42"})
        body = problem(response, 422)
        assert body["type"] == "tag:video-pipelines,2025:idempotency-key-reused", body
        assert "'order-42'" in body["detail"] and first in body["detail"]
        assert body["errors"] == [{"node": None, "field": "Idempotency-Key", "message": body["detail"]}]
    assert api.rows() == 1


def test_another_tenant_gets_404_exactly_as_for_a_missing_id(api_on_db: Api) -> None:
    api = api_on_db
    acme, globex = api.key("acme"), api.key("globex")
    execution_id = submit(api, acme, {**PLAN, "webhook": HOOK})
    missing = "exec_01M000000000000000000000"
    for method, suffix in (
        ("GET", "status"),
        ("POST", "cancel"),
        ("GET", "events"),
        ("GET", "deliveries"),
        ("POST", "deliveries/msg_{id}_canceled/redeliver"),
    ):
        theirs, absent = (
            problem(api.client.request(method, f"/api/execute/{id_}/{suffix.format(id=id_)}", headers=globex), 404)
            for id_ in (execution_id, missing)
        )
        assert json.dumps(theirs).replace(execution_id, "ID") == json.dumps(absent).replace(missing, "ID")
    assert api.client.get(f"/api/execute/{execution_id}/status", headers=acme).json()["status"] == "pending"

    assert api.client.get("/api/executions", headers=globex).json() == {"executions": [], "nextCursor": None}
    [listed] = api.client.get("/api/executions", headers=acme).json()["executions"]
    assert listed["executionId"] == execution_id

    # Nor can it be a base: the same words as a base that does not exist.
    theirs = problem(
        api.client.post("/api/execute", json={**PLAN, "baseExecutionId": execution_id}, headers=globex), 422
    )
    absent = problem(api.client.post("/api/execute", json={**PLAN, "baseExecutionId": missing}, headers=globex), 422)
    assert theirs["errors"] == [
        {"node": None, "field": "plan.baseExecutionId", "message": f"base execution {execution_id} does not exist"}
    ]
    assert json.dumps(theirs["errors"]).replace(execution_id, "ID") == json.dumps(absent["errors"]).replace(
        missing, "ID"
    )
    assert api.rows() == 1 and api.rows(WEBHOOK_DELIVERIES_TABLE) == 0


def test_cancel_then_the_delivery_log_and_a_redelivery(api: Api) -> None:
    acme = api.key()
    execution_id = submit(api, acme, {**PLAN, "webhook": HOOK})
    response = api.client.post(f"/api/execute/{execution_id}/cancel", headers=acme)
    assert response.status_code == 202 and response.json()["status"] == "canceled"
    assert response.json() == executions.execution_status(api.state.records, api.store, execution_id).to_wire()

    log = api.client.get(f"/api/execute/{execution_id}/deliveries", headers=acme)
    assert log.status_code == 200
    [delivery] = log.json()["deliveries"]
    assert log.json()["deliveries"] == executions.delivery_report(api.store, execution_id)
    assert (delivery["webhookId"], delivery["event"], delivery["state"]) == (
        f"msg_{execution_id}_canceled", "canceled", "pending"
    )  # fmt: skip

    path = f"/api/execute/{execution_id}/deliveries/{delivery['webhookId']}/redeliver"
    again = api.client.post(path, headers=acme)
    assert again.status_code == 202 and again.json()["webhookId"] == delivery["webhookId"]
    assert again.json()["state"] == "pending" and api.rows(WEBHOOK_DELIVERIES_TABLE) == 1
    body = problem(api.client.post(f"/api/execute/{execution_id}/deliveries/msg_nope/redeliver", headers=acme), 404)
    assert "msg_nope" in body["detail"]


def test_the_list_pages_newest_first_and_filters_by_status(api: Api) -> None:
    acme = api.key()
    ids = [submit(api, acme) for _ in range(3)]
    api.client.post(f"/api/execute/{ids[0]}/cancel", headers=acme)
    page = api.client.get("/api/executions?limit=2", headers=acme).json()
    assert [e["executionId"] for e in page["executions"]] == [ids[2], ids[1]] and page["nextCursor"] == ids[1]
    rest = api.client.get(f"/api/executions?limit=2&cursor={page['nextCursor']}", headers=acme).json()
    assert [e["executionId"] for e in rest["executions"]] == [ids[0]] and rest["nextCursor"] is None
    canceled = api.client.get("/api/executions?status=canceled", headers=acme).json()["executions"]
    assert [e["executionId"] for e in canceled] == [ids[0]]


def test_the_rate_limit_answers_429_with_retry_after_per_key(make_api: ApiFactory) -> None:
    api = make_api(rate_limit=RateLimit(2, 3600.0))
    acme, other = api.key("acme"), api.key("acme")
    assert [api.client.get("/api/executions", headers=acme).status_code for _ in range(2)] == [200, 200]
    response = api.client.post("/api/execute", json=PLAN, headers=acme)
    body = problem(response, 429)
    assert 1 <= int(response.headers["retry-after"]) <= 1800 and "2 requests" in body["detail"]
    assert api.client.get("/api/executions", headers=other).status_code == 200
    assert api.rows() == 0


def beat(state: ApiState, daemon_types: list[str], age_seconds: float = 0.0) -> None:
    for daemon_type in daemon_types:
        state.instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - age_seconds, daemon_type, None, None))


def test_json_answers_are_written_as_javascript_writes_them(api: Api) -> None:
    """As the webhooks (net.javascript): whole numbers without '.0', what JSON.stringify gives back after JSON.parse."""
    response = api.client.get("/api/costs", headers=api.key())
    assert response.status_code == 200 and response.json()["totalUsd"] == 0
    assert b'"totalUsd":0,' in response.content and response.content == js_json_bytes(response.json())


def test_health_is_503_naming_the_daemon_without_a_heartbeat(api: Api) -> None:
    body = problem(api.client.get("/health"), 503)
    assert (body["database"], body["daemon"], body["storage"]) == ("ok", "down", "ok")
    assert "daemon is down" in body["detail"] and "SENSOR (no heartbeat)" in body["detail"]

    required = list(api.state.instance.get_required_daemon_types())
    beat(api.state, required)
    response = api.client.get("/health")
    assert response.status_code == 200 and response.json() == {"database": "ok", "daemon": "ok", "storage": "ok"}
    assert list((Path(os.environ["DAGSTER_HOME"]) / "artifacts").glob("videos/*/*.txt"))  # the storage probe

    beat(api.state, required[:1], age_seconds=600)  # one daemon stopped beating ten minutes ago
    body = problem(api.client.get("/health"), 503)
    assert f"{required[0]} (last heartbeat 600 s ago)" in body["detail"] and body["database"] == "ok"


def test_health_lists_open_circuits_and_stays_200(api: Api) -> None:
    beat(api.state, list(api.state.instance.get_required_daemon_types()))
    ProviderCircuits(api.state.store, BreakerSettings(failures=1)).failed("replicate")
    response = api.client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json() == {"database": "ok", "daemon": "ok", "storage": "ok", "providers": {"replicate": "open"}}
    ProviderCircuits(api.state.store).succeeded("replicate")
    assert "providers" not in api.client.get("/health").json()


def test_health_names_unusable_storage(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beat(api.state, list(api.state.instance.get_required_daemon_types()))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", (blocker / "artifacts").as_uri())
    api.state._artifacts = None
    body = problem(api.client.get("/health"), 503)
    assert (body["database"], body["daemon"], body["storage"]) == ("ok", "ok", "down")
    assert body["detail"].startswith("storage is down: StorageError")


def test_metrics_and_the_docs_need_no_key(api: Api) -> None:
    acme = api.key()
    submit(api, acme)
    response = api.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert any(name.startswith("video_pipelines_") for name in families)

    document = api.client.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/execute", "/api/execute/{execution_id}/status", "/api/execute/{execution_id}/cancel",
        "/api/execute/{execution_id}/retry",
        "/api/execute/{execution_id}/events", "/api/executions", "/api/execute/{execution_id}/deliveries",
        "/api/execute/{execution_id}/deliveries/{webhook_id}/redeliver", "/health", "/metrics",
        "/api/execute/{execution_id}/logs", "/api/costs", "/api/costs/suggestions", "/api/executions/retry",
        "/api/workers", "/api/queue", "/api/providers/{provider}/webhook",
    }  # fmt: skip
    submit_doc = document["paths"]["/api/execute"]["post"]
    assert submit_doc["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PlanDocument")
    assert "PlanDocument" in document["components"]["schemas"] and "HTTPValidationError" not in json.dumps(document)
    assert set(submit_doc["responses"]["422"]["content"]) == {"application/problem+json"}
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["apiKey"]["description"]
    }  # fmt: skip
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_events_of_an_ended_execution_are_its_current_state_then_the_end(api: Api) -> None:
    acme = api.key()
    execution_id = submit(api, acme)
    api.client.post(f"/api/execute/{execution_id}/cancel", headers=acme)
    response = api.client.get(f"/api/execute/{execution_id}/events", headers=acme)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    [(kind, data)] = parse_stream(response.content)
    assert kind == "status" and data == api.client.get(f"/api/execute/{execution_id}/status", headers=acme).json()
