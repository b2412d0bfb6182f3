"""Hostile input at every door (SPEC section 8, "Input limits"): refused with a clear 400/404/422, never a 5xx.

Layers: the plan model (node and nesting limits, NUL characters, graph algorithms and `{{ref}}`
substitution that never recurse), the plan text as the CLI reads it (a real process), the
HTTP API in-process (FastAPI's TestClient on PostgreSQL, which refuses NUL in text), and a
real `video-pipelines serve` on PostgreSQL taking every hostile request on one keep-alive
connection, which must then still serve a good one.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from video_pipelines.errors import PlanValidationError, UsageError
from video_pipelines.plan import execution_order, find_cycle, levels, lineage_hashes, load_plan_json, parse_plan
from video_pipelines.plan.limits import max_nodes
from video_pipelines.plan.refs import find_references, with_results
from video_pipelines.plan.reuse import resolve
from video_pipelines.submissions import ApiKeys, SubmissionStore

from .api_process import api_process

MAX_NODES_ENV = "VIDEO_PIPELINES_MAX_NODES"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def gen(node_id: str, **params: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "generateVideo", "params": {"prompt": f"scene {node_id}", "duration": 1, **params}}


def chain(count: int) -> list[dict[str, Any]]:
    """n0 <- n1 <- ... : each node reframes the one before."""
    return [gen("n0")] + [
        {"id": f"n{i}", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": [f"n{i - 1}"]}
        for i in range(1, count)
    ]


def cycle(count: int) -> list[dict[str, Any]]:
    """n0 depends on n1, ..., the last on n0."""
    return [
        {"id": f"n{i}", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": [f"n{(i + 1) % count}"]}
        for i in range(count)
    ]


def nested(depth: int, leaf: Any = "x") -> Any:
    """`depth` objects one in another around `leaf`: {"a": {"a": ... leaf}}."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def problems(data: Any) -> list[str]:
    with pytest.raises(PlanValidationError) as raised:
        parse_plan(data)
    return raised.value.problems


# --- the plan model --------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["forward", "reversed", "shuffled"])
def test_a_500_node_chain_in_any_order_is_accepted(order: str) -> None:
    jobs = chain(500)
    if order == "reversed":
        jobs.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(jobs)
    plan = parse_plan({"jobs": jobs})
    assert [node.id for node in execution_order(plan)] == [f"n{i}" for i in range(500)]
    assert levels(plan)["n499"] == 499 and list(levels(plan)) == [job["id"] for job in jobs]
    assert len(set(lineage_hashes(plan).values())) == 500
    assert resolve(plan).run_levels()["n499"] == 499


def test_more_nodes_than_the_limit_are_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_NODES_ENV, raising=False)
    assert len(parse_plan({"jobs": [gen(f"g{i}") for i in range(500)]}).nodes) == 500
    assert problems({"jobs": [gen(f"g{i}") for i in range(501)]}) == [
        "plan.jobs: 501 jobs, more than the 500 a plan may have (VIDEO_PIPELINES_MAX_NODES)"
    ]
    monkeypatch.setenv(MAX_NODES_ENV, "501")
    assert len(parse_plan({"jobs": [gen(f"g{i}") for i in range(501)]}).nodes) == 501
    assert max_nodes({MAX_NODES_ENV: " 20 "}) == 20 and max_nodes({}) == 500
    for bad in ("0", "-1", "many", "1.5"):
        with pytest.raises(UsageError, match=MAX_NODES_ENV):
            max_nodes({MAX_NODES_ENV: bad})


def test_params_nest_at_most_32_levels() -> None:
    # 32 levels: params and 31 objects in it; an unknown param, but not too deep.
    [unknown] = problems({"jobs": [gen("a", x=nested(31))]})
    assert unknown.startswith("a.params.x: unknown param")
    assert problems({"jobs": [gen("a", x=nested(32))]}) == [
        "a.params: nested more than 32 levels deep (objects and lists); the limit is 32"
    ]
    # The Python client hands values over as they are: 100,000 levels are measured, never recursed into.
    assert problems({"jobs": [gen("a", x=[nested(100_000)])]})[0].startswith("a.params: nested more than 32")
    # Every other value of a plan too: its messages would otherwise show (repr) the value.
    webhook = {"url": "https://hooks.example.com", "events": nested(100_000)}
    assert problems({"jobs": [gen("a")], "webhook": webhook})[0].startswith("plan.webhook: nested more than 32")
    assert problems({"jobs": [gen("a")], "priority": nested(40)})[0].startswith("plan.priority: nested more than 32")


def test_a_1000_node_cycle_is_named_without_recursion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_NODES_ENV, "1000")
    [found] = problems({"jobs": cycle(1000)})
    ids = found.removeprefix("plan: dependency cycle ").split(" -> ")
    assert len(ids) == 1001 and ids[0] == ids[-1] and set(ids) == {f"n{i}" for i in range(1000)}
    # In the direction of data flow: each node is a dependency of the next.
    assert ids[:3] == ["n0", "n999", "n998"]


def test_cycles_are_named_from_the_plan_object_too() -> None:
    plan = parse_plan({"jobs": chain(3)})
    looped = replace(plan, nodes=(replace(plan.nodes[0], depends_on=("n2",)), *plan.nodes[1:]))
    assert find_cycle(looped) == ["n0", "n1", "n2", "n0"]
    assert find_cycle(plan) is None


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"jobs": [gen("a", prompt="a\x00b")]}, "a.params.prompt"),
        ({"jobs": [gen("a")], "baseExecutionId": "exec_\x00"}, "plan.baseExecutionId"),
        ({"jobs": [gen("a")], "webhook": {"url": "https://hooks.example.com/\x00"}}, "plan.webhook.url"),
        ({"jobs": [gen("a")], "webhook": {"url": "https://h.example.com", "secret": "s\x00"}}, "plan.webhook.secret"),
        ({"jobs": [{**gen("a"), "params": {"prompt": "p", "x\x00": 1}}]}, "a.params"),
        ({"jobs": [gen("a"), {"id": "b", "type": "merge", "dependsOn": ["a\x00"]}]}, "b.dependsOn[0]"),
    ],
)
def test_a_nul_character_anywhere_in_a_plan_is_refused_naming_the_field(change: dict[str, Any], where: str) -> None:
    found = problems(change)
    assert any(p.startswith(f"{where}") and "NUL character" in p for p in found), found


def test_a_number_too_long_is_refused_at_every_door() -> None:
    # Python hands over the int itself; showing it in a message would raise (int max str digits).
    [found] = problems({"jobs": [gen("a", seed=10**5000)]})
    assert found == "a.params.seed: a number of more than 100 digits (the limit)"


def test_references_are_found_and_substituted_at_any_depth_without_recursion() -> None:
    deep = [nested(5_000, "{{a.duration}}"), "made of {{a}}"]
    assert [(ref.node_id, ref.field) for ref in find_references(deep)] == [("a", "duration"), ("a", "url")]
    results = {"a": {"duration": 2.5, "url": "https://v.example.com/a.mp4"}}
    replaced = with_results(deep, results)
    inner = replaced[0]
    for _ in range(5_000):
        inner = inner["a"]
    assert inner == 2.5 and replaced[1] == "made of https://v.example.com/a.mp4"
    assert deep[1] == "made of {{a}}"  # a copy: the plan's own params keep their references


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, "arrays and objects nested deeper than 64 levels (the limit) at line 1 column 65"),
        ('{"a":' * 50_000, "arrays and objects nested deeper than 64 levels (the limit) at line 1 column 321"),
        (
            '{"jobs": [], "x": ' + "7" * 4301 + "}",
            "a number longer than 100 characters (the limit) at line 1 column 19",
        ),
        ('{"jobs": [], "x": 1.' + "0" * 200 + "}", "a number longer than 100 characters"),
    ],
    ids=["100,000 [", '50,000 {"a":', "a 4,301-digit number", "a float of 202 characters"],
)
def test_plan_text_too_deep_or_with_too_long_a_number_is_refused_before_json_reads_it(text: str, message: str) -> None:
    with pytest.raises(PlanValidationError, match="plan is not valid JSON: ") as raised:
        load_plan_json(text)
    assert message in raised.value.problems[0]


def test_plan_text_within_the_limits_reads_as_json_does() -> None:
    inside = json.dumps({"jobs": [gen("a", prompt="[[[[{{" * 100 + '" \\" ]]]')], "x": nested(60, 10**99)})
    assert load_plan_json(inside) == json.loads(inside)
    assert load_plan_json(inside.encode("utf-16")) == json.loads(inside)


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


# --- the HTTP API in-process, on PostgreSQL --------------------------------------------------

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
    from video_pipelines.api import ApiSettings, create_app
    from video_pipelines.deployment.instance import prepare_dagster_home

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


# --- a real server: every refusal on one keep-alive connection ---------------------------------


def local_port(response: httpx.Response) -> int:
    """The client side's port of the connection that carried `response` (one port: one connection)."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


@pytest.mark.postgres
def test_a_real_server_keeps_the_connection_through_every_refusal(tmp_path: Path, postgres_url: str) -> None:
    from video_pipelines.deployment.instance import prepare_dagster_home

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
