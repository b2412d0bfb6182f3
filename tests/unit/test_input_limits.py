"""Hostile input at every door (SPEC section 8, "Input limits"): refused with a clear 400/404/422, never a 5xx.

Layers: the plan model (node and nesting limits, NUL characters, graph algorithms and `{{ref}}`
substitution that never recurse) and the plan text as the CLI reads it. The HTTP API in-process is in
dagster/test_input_limits.py; the CLI and a real `video-pipelines serve` are in e2e/test_input_limits.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from video_pipelines.errors import PlanValidationError, UsageError
from video_pipelines.plan import execution_order, find_cycle, levels, lineage_hashes, load_plan_json, parse_plan
from video_pipelines.plan.limits import max_nodes
from video_pipelines.plan.refs import find_references, with_results
from video_pipelines.plan.reuse import resolve

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
