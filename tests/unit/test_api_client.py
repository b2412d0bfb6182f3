"""The API client against real HTTP servers on 127.0.0.1: retries, idempotency keys, error mapping.

The server here plays what stands between a client and the API (a proxy that answers 503, a
server that is slow or gone) and answers from a script; the client against the real API
(`video-pipelines serve`) is in e2e/test_api.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from video_pipelines.doors.api_client import API_KEY_ENV, API_URL_ENV, ApiClient, plan_problems
from video_pipelines.errors import (
    ExecutionConflict,
    ExecutionNotFound,
    IdempotencyKeyReused,
    PlanValidationError,
    UsageError,
    VideoPipelineError,
)
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.plan.problems import plan_problems as located

from ..conftest import free_port
from ..http_servers import serve_in_background, shut_down

PLAN: dict[str, Any] = {"jobs": [{"id": "job1", "type": "generate", "params": {"prompt": "x"}, "output": "$job1"}]}


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """Answers each request with the next scripted `Answer` (then 200 {}) and records it."""

    script: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                scripted.seen.append(
                    Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                answer = scripted.script.pop(0) if scripted.script else Answer(200, {})
            time.sleep(answer.delay)
            payload = json.dumps(answer.body).encode() if answer.body is not None else b""
            self.send_response(answer.status)
            problem = answer.status >= 400
            self.send_header("Content-Type", "application/problem+json" if problem else "application/json")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    http = serve_in_background(Handler)
    scripted.port = http.server_address[1]
    try:
        yield scripted
    finally:
        shut_down(http)


def api(url: str, **options: Any) -> ApiClient:
    return ApiClient(url, "vp_test_key", backoff=0.01, **options)


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Answer:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra}
    return Answer(status, body, headers or {})


def test_the_client_imports_neither_dagster_nor_the_database() -> None:
    code = (
        "import sys\n"
        "import video_pipelines.doors.api_client, video_pipelines.doors.client, video_pipelines.doors.cli\n"
        "print(sorted(m for m in ('dagster', 'sqlalchemy', 'psycopg2') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_submit_sends_the_plan_with_overrides_and_a_bearer_key(server: ScriptedServer) -> None:
    server.script = [Answer(202, {"executionId": "exec_1"})]
    with api(server.url) as client:
        execution_id = client.submit(
            PLAN,
            SubmitOptions(
                base_execution_id="exec_0", webhook_url="http://hooks/x", webhook_secret="s", priority="high"
            ),
        )
    assert execution_id == "exec_1"
    [request] = server.seen
    assert (request.method, request.path) == ("POST", "/api/execute")
    assert request.headers["authorization"] == "Bearer vp_test_key"
    assert json.loads(request.body) == {
        **PLAN,
        "baseExecutionId": "exec_0",
        "priority": "high",
        "webhook": {"url": "http://hooks/x", "secret": "s"},
    }


def test_a_retried_submit_repeats_its_idempotency_key(server: ScriptedServer) -> None:
    server.script = [problem(503, "starting"), Answer(502, None), Answer(202, {"executionId": "exec_1"})]
    server.script.append(Answer(202, {"executionId": "exec_1"}))
    with api(server.url) as client:
        assert client.submit(PLAN) == "exec_1"
        assert client.submit(PLAN, SubmitOptions(idempotency_key="order-42")) == "exec_1"
    keys = [request.headers["idempotency-key"] for request in server.seen]
    assert len(keys) == 4 and keys[0] == keys[1] == keys[2]  # one key per call, the same on every retry
    assert keys[3] == "order-42" and keys[0] != "order-42"


def test_submit_calls_without_a_key_get_different_keys(server: ScriptedServer) -> None:
    server.script = [Answer(202, {"executionId": "exec_1"}), Answer(202, {"executionId": "exec_2"})]
    with api(server.url) as client:
        assert [client.submit(PLAN), client.submit(PLAN)] == ["exec_1", "exec_2"]
    first, second = (request.headers["idempotency-key"] for request in server.seen)
    assert first != second


def test_a_timed_out_status_is_asked_again(server: ScriptedServer) -> None:
    server.script = [Answer(200, {"status": "pending"}, delay=1.0), Answer(200, {"status": "completed"})]
    with api(server.url, timeout=0.3) as client:
        assert client.status("exec_1") == {"status": "completed"}
    assert [request.path for request in server.seen] == ["/api/execute/exec_1/status"] * 2


def test_429_waits_for_retry_after(server: ScriptedServer) -> None:
    server.script = [problem(429, "slow down", headers={"Retry-After": "0.2"}), Answer(200, [])]
    with api(server.url) as client:
        started = time.monotonic()
        assert client.deliveries("exec_1") == []
        assert time.monotonic() - started >= 0.2
    assert len(server.seen) == 2


def test_a_redelivery_is_not_repeated_once_it_may_have_been_sent(server: ScriptedServer) -> None:
    server.script = [problem(503, "busy")]
    with api(server.url) as client, pytest.raises(VideoPipelineError, match=r"failed \(503\): busy"):
        client.redeliver("exec_1", "msg_exec_1_completed")
    [request] = server.seen
    assert request.path == "/api/execute/exec_1/deliveries/msg_exec_1_completed/redeliver"


def test_giving_up_after_the_retries_says_what_failed(server: ScriptedServer) -> None:
    server.script = [problem(503, "database is down")] * 4
    with api(server.url, retries=3) as client, pytest.raises(VideoPipelineError, match="database is down"):
        client.status("exec_1")
    assert len(server.seen) == 4


def test_a_server_that_is_not_there() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with api(url, retries=2) as client, pytest.raises(VideoPipelineError, match=r"cannot reach the API .* 3 attempts"):
        client.redeliver("exec_1", "msg_1")  # never sent, so tried again even though redelivery is not repeatable


def test_problems_map_to_the_package_errors(server: ScriptedServer) -> None:
    errors = [
        {"node": "job3", "field": "params.transition", "message": "unknown transition 'wipe'"},
        {"node": None, "field": "plan.webhook.url", "message": "host is a private address"},
    ]
    server.script = [
        problem(422, "invalid plan", errors=errors),
        problem(422, "key 'k' was used before", type="tag:video-pipelines,2025:idempotency-key-reused", errors=[]),
        problem(404, "no execution exec_9"),
        problem(401, "missing API key"),
        problem(409, "exec_9 has ended"),
        problem(413, "the body is over 1048576 bytes"),
        problem(500, "boom"),
    ]
    with api(server.url) as client:
        with pytest.raises(PlanValidationError) as invalid:
            client.submit(PLAN)
        assert invalid.value.problems == [
            "job3.params.transition: unknown transition 'wipe'",
            "plan.webhook.url: host is a private address",
        ]
        with pytest.raises(IdempotencyKeyReused, match="key 'k' was used before"):
            client.submit(PLAN, SubmitOptions(idempotency_key="k"))
        with pytest.raises(ExecutionNotFound, match="no execution exec_9"):
            client.status("exec_9")
        with pytest.raises(UsageError, match=f"401: missing API key.*{API_KEY_ENV}"):
            client.cancel("exec_9")
        with pytest.raises(ExecutionConflict, match="exec_9 has ended"):
            client.redeliver("exec_9", "msg_exec_9_completed")
        with pytest.raises(UsageError, match=r"413.*over 1048576 bytes"):
            client.submit(PLAN)
        with pytest.raises(VideoPipelineError, match=r"failed \(500\): boom"):
            client.deliveries("exec_9")


def test_plan_problems_are_the_strings_the_api_located() -> None:
    problems = ["job3.params.transition: must be one of ...", "job3: unknown field 'x'", "plan is not valid JSON: x"]
    wire = [problem.to_wire() for problem in located(PlanValidationError(problems))]
    assert plan_problems(wire) == problems


def test_from_env() -> None:
    assert ApiClient.from_env({}) is None
    with pytest.raises(UsageError, match=API_KEY_ENV):
        ApiClient.from_env({API_URL_ENV: "http://127.0.0.1:1"})
    with ApiClient.from_env({API_URL_ENV: "http://127.0.0.1:1/", API_KEY_ENV: "k"}) as client:  # type: ignore[union-attr]
        assert client.base_url == "http://127.0.0.1:1"
