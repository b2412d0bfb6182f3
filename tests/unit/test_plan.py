"""Plan model: parsing, every validation case of the plan format, graph algorithms and lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from video_pipelines.errors import PlanValidationError
from video_pipelines.plan import (
    Operation,
    Priority,
    execution_order,
    levels,
    lineage_hashes,
    load_plan_json,
    parse_plan,
    sinks,
)
from video_pipelines.plan.refs import with_results

PLANS = Path(__file__).resolve().parents[3] / "shared" / "plans"
if not PLANS.exists():
    PLANS = Path(__file__).resolve().parents[2] / "video_pipelines" / "examples"


def load(name: str) -> dict[str, Any]:
    return load_plan_json((PLANS / f"{name}.json").read_text())


def problems(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(PlanValidationError) as info:
        parse_plan(data, **kwargs)
    return info.value.problems


def gen(node_id: str, **params: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "generateVideo", "params": {"prompt": f"scene {node_id}", **params}}


# --- the example plans ----------------------------------------------------------------------


def test_product_demo_parses_in_order() -> None:
    plan = parse_plan(load("product_demo"))
    assert [n.id for n in execution_order(plan)] == ["job1", "job2", "job3", "job4"]
    assert levels(plan) == {"job1": 0, "job2": 0, "job3": 0, "job4": 1}
    assert plan.node("job4").depends_on == ("job1", "job2", "job3")
    assert sinks(plan)[-1].id == "job4"
    assert plan.priority is Priority.NORMAL


def test_vertical_short_and_french_variant_parse() -> None:
    assert [n.id for n in execution_order(parse_plan(load("vertical_short")))] == ["clip", "vertical"]
    french = parse_plan(load("french_variant"))
    assert levels(french)["job6"] == 3


def test_spanish_dependent_needs_a_base() -> None:
    assert any("job1.dependsOn" in p and "got 0" in p for p in problems(load("spanish_dependent")))
    plan = parse_plan({**load("spanish_dependent"), "baseExecutionId": "exec_1"})
    assert plan.base_execution_id == "exec_1"


def test_operation_alias_and_snake_case() -> None:
    plan = parse_plan(
        {
            "jobs": [
                {"id": "a", "operation": "generate_video", "params": {"prompt": "x"}},
                {"id": "b", "type": "add_subtitles", "params": {"text": "hi"}, "dependsOn": ["a"]},
                {
                    "id": "c",
                    "operation": "lip_sync",
                    "params": {"audioUrl": "https://x/a.mp3"},
                    "dependsOn": ["b"],
                },
            ]
        }
    )
    assert [n.operation for n in plan.nodes] == [
        Operation.GENERATE_VIDEO,
        Operation.ADD_SUBTITLES,
        Operation.LIP_SYNC,
    ]


# --- every validation case, each naming the node and the field --------------------------------


def test_malformed_json() -> None:
    with pytest.raises(PlanValidationError, match=r"not valid JSON: .* line 1 column"):
        load_plan_json('{"jobs": [')
    with pytest.raises(PlanValidationError, match="must be a JSON object"):
        load_plan_json("[1, 2]")


def test_empty_plan() -> None:
    assert problems({"jobs": []}) == ["plan.jobs: the plan is empty; add at least one job"]
    assert problems({}) == ["plan.jobs: missing"]


def test_unknown_operation() -> None:
    [problem] = problems({"jobs": [{"id": "j1", "type": "explode"}]})
    assert problem.startswith("j1.type: unknown operation 'explode'") and "generateVideo" in problem


def test_type_and_operation_must_agree() -> None:
    assert any("disagree" in p for p in problems({"jobs": [{"id": "j", "type": "merge", "operation": "reframe"}]}))


def test_missing_and_invalid_params() -> None:
    found = problems(
        {
            "jobs": [
                {
                    "id": "g",
                    "type": "generateVideo",
                    "params": {"duration": 99, "aspectRatio": "2:1", "promt": "x"},
                },
                {"id": "m", "type": "merge", "params": {"transition": "wipe"}, "dependsOn": ["g"]},
                {"id": "r", "type": "reframe", "params": {}, "dependsOn": ["m"]},
                {
                    "id": "s",
                    "type": "addSubtitles",
                    "params": {"text": "a", "cues": [{"start": 0, "end": 1, "text": "x"}]},
                    "dependsOn": ["r"],
                },
                {"id": "l", "type": "lipSync", "params": {"audioUrl": "ftp://x"}, "dependsOn": ["s"]},
            ]
        }
    )
    joined = "\n".join(found)
    assert "g.params.prompt: required by generateVideo" in joined
    assert "g.params.duration:" in joined and "60" in joined
    assert "g.params.aspectRatio:" in joined
    assert "g.params.promt: unknown param for generateVideo" in joined
    assert "m.params.transition:" in joined and "'wipe'" in joined
    assert "r.params.aspectRatio: required by reframe" in joined
    assert "s.params: give exactly one of 'text', 'cues' or 'srt' (got text, cues)" in joined
    assert "l.params.audioUrl: must be an http(s) URL" in joined


def test_subtitle_cues_validated() -> None:
    found = problems(
        {
            "jobs": [
                gen("a"),
                {
                    "id": "s",
                    "type": "addSubtitles",
                    "params": {"cues": [{"start": 2, "end": 1, "text": "x"}]},
                    "dependsOn": ["a"],
                },
            ]
        }
    )
    assert any(p.startswith("s.params.cues.0:") and "before it starts" in p for p in found)


def test_duplicate_ids() -> None:
    assert problems({"jobs": [gen("a"), gen("b"), gen("a")]}) == ["a: duplicate id (jobs[0] and jobs[2])"]


def test_unknown_dependency() -> None:
    [problem] = problems({"jobs": [gen("a"), {"id": "m", "type": "merge", "dependsOn": ["a", "ghost"]}]})
    assert problem == "m.dependsOn: unknown dependency 'ghost' (no job with that id)"


def test_unknown_dependency_in_a_variant_names_the_base() -> None:
    data = {"baseExecutionId": "exec_b", "jobs": [{"id": "m", "type": "merge", "dependsOn": ["ghost"]}]}
    [problem] = problems(data, external_nodes={"job1"})
    assert "in base exec_b" in problem
    assert parse_plan(data, external_nodes={"ghost"}).node("m").depends_on == ("ghost",)


def test_cycle_is_named_as_a_path() -> None:
    found = problems(
        {
            "jobs": [
                gen("start"),
                {"id": "a", "type": "merge", "dependsOn": ["start", "c"]},
                {"id": "b", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a"]},
                {"id": "c", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["b"]},
            ]
        }
    )
    assert found == ["plan: dependency cycle a -> b -> c -> a"]


def test_self_dependency() -> None:
    found = problems({"jobs": [gen("a"), {"id": "b", "type": "merge", "dependsOn": ["a", "b"]}]})
    assert any("b.dependsOn: a job cannot depend on itself (cycle b -> b)" in p for p in found)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {"id": "m", "type": "merge", "dependsOn": []},
            "m.dependsOn: merge takes at least 1 input videos, got 0",
        ),
        (
            {"id": "r", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a", "b"]},
            "r.dependsOn: reframe takes exactly 1 input video, got 2",
        ),
        (
            {"id": "l", "type": "lipSync", "params": {"audioUrl": "https://x/a.mp3"}},
            "l.dependsOn: lipSync takes exactly 1 input video, got 0",
        ),
    ],
)
def test_wrong_input_count(node: dict[str, Any], expected: str) -> None:
    found = problems({"jobs": [gen("a"), gen("b"), node]})
    assert any(p.startswith(expected) for p in found), found


def test_bad_references() -> None:
    found = problems(
        {
            "jobs": [
                gen("a"),
                gen("b"),
                {
                    "id": "s",
                    "type": "addSubtitles",
                    "params": {"text": "{{b.duration}} and {{a.nope}}"},
                    "dependsOn": ["a"],
                },
            ]
        }
    )
    assert "s.params.text: {{b.duration}} refers to 'b', which is not upstream of s (add it to dependsOn)" in found
    assert any(p.startswith("s.params.text: {{a.nope}} names an unknown field 'nope'") for p in found)


def test_reference_to_a_downstream_node_is_refused() -> None:
    found = problems(
        {
            "jobs": [
                gen("a", duration="{{b.duration}}"),
                {"id": "b", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a"]},
            ]
        }
    )
    assert any("which is not upstream of a" in p for p in found)


def test_references_are_typed_and_substituted() -> None:
    plan = parse_plan(
        {
            "jobs": [
                gen("a"),
                {
                    "id": "b",
                    "type": "generateVideo",
                    "params": {"prompt": "after {{a}}", "duration": "{{a.duration}}"},
                    "dependsOn": ["a"],
                },
            ]
        }
    )
    results = {"a": {"url": "file:///v.mp4", "duration": 4.5}}
    assert with_results(plan.node("b").params, results) == {"prompt": "after file:///v.mp4", "duration": 4.5}
    typed = plan.node("b").typed_params(results)
    assert typed.duration == 4.5  # type: ignore[union-attr]


def test_reference_with_wrong_type_is_refused() -> None:
    found = problems(
        {
            "jobs": [
                gen("a"),
                {"id": "r", "type": "reframe", "params": {"aspectRatio": "{{a.width}}"}, "dependsOn": ["a"]},
            ]
        }
    )
    assert any(p.startswith("r.params.aspectRatio:") for p in found)


def test_output_must_name_the_node() -> None:
    assert problems({"jobs": [{**gen("a"), "output": "$b"}]}) == ["a.output: must be '$a' (got '$b')"]


def test_bad_ids_and_shapes() -> None:
    assert problems({"jobs": [{"type": "merge"}]})[0].startswith("jobs[0].id: missing")
    assert "is not a valid id" in problems({"jobs": [{"id": "a b", "type": "merge"}]})[0]
    assert problems({"jobs": "nope"}) == ["plan.jobs: must be a list of jobs"]
    assert problems({"jobs": [gen("a")], "priority": "urgent"}) == [
        "plan.priority: must be one of high, normal, low (got 'urgent')"
    ]
    assert problems({"jobs": [gen("a")], "colour": 1})[0].startswith("plan: unknown field 'colour'")


@pytest.mark.parametrize("value", [0, -1, "5", True, float("inf"), float("nan"), [1]])
def test_max_cost_usd_must_be_a_positive_number(value: object) -> None:
    [problem] = problems({"jobs": [gen("a")], "maxCostUsd": value})
    assert problem.startswith("plan.maxCostUsd: must be a positive number of US dollars")


@pytest.mark.parametrize("value", [0, -5, 1.5, "10", True])
def test_timeout_seconds_must_be_a_positive_whole_number(value: object) -> None:
    [problem] = problems({"jobs": [gen("a")], "timeoutSeconds": value})
    assert problem.startswith("plan.timeoutSeconds: must be a positive whole number of seconds")


def test_spend_cap_and_deadline_round_trip() -> None:
    plan = parse_plan({"jobs": [gen("a")], "maxCostUsd": 2, "timeoutSeconds": 30.0})
    assert (plan.max_cost_usd, plan.timeout_seconds) == (2.0, 30)
    assert parse_plan(plan.to_wire()) == plan
    assert plan.to_wire()["maxCostUsd"] == 2.0 and plan.to_wire()["timeoutSeconds"] == 30
    assert "maxCostUsd" not in parse_plan({"jobs": [gen("a")]}).to_wire()


def test_webhook_validation() -> None:
    assert problems({"jobs": [gen("a")], "webhook": {"url": "ftp://x"}}) == ["plan.webhook.url: must be an http(s) URL"]
    assert (
        "not both"
        in problems({"jobs": [gen("a")], "webhook": {"url": "https://x", "secret": "s", "secretEnv": "S"}})[0]
    )
    plan = parse_plan({"jobs": [gen("a")], "webhook": {"url": "https://x", "secret": "s3cret"}})
    assert plan.webhook is not None and "s3cret" not in repr(plan.webhook)
    assert "secret" not in json.dumps(plan.to_wire())
    assert plan.to_wire(include_secret=True)["webhook"]["secret"] == "s3cret"


def test_all_problems_reported_at_once() -> None:
    found = problems({"jobs": [gen("a", duration=0), {"id": "b", "type": "explode"}]})
    assert len(found) == 1 or len(found) == 2
    assert any(p.startswith("b.type") for p in found)


# --- lineage ------------------------------------------------------------------------------------


def test_lineage_ignores_defaults_and_follows_inputs() -> None:
    base = parse_plan(load("product_demo"))
    french = parse_plan(load("french_variant"))
    base_lineage, french_lineage = lineage_hashes(base), lineage_hashes(french)
    for node_id in ("job1", "job2", "job3", "job4"):
        assert base_lineage[node_id] == french_lineage[node_id]

    explicit = load("product_demo")
    explicit["jobs"][0]["params"]["aspectRatio"] = "16:9"  # the default, written out
    assert lineage_hashes(parse_plan(explicit))["job1"] == base_lineage["job1"]

    changed = load("product_demo")
    changed["jobs"][1]["params"]["prompt"] = "another scene"
    changed_lineage = lineage_hashes(parse_plan(changed))
    assert changed_lineage["job1"] == base_lineage["job1"]
    assert changed_lineage["job2"] != base_lineage["job2"]
    assert changed_lineage["job4"] != base_lineage["job4"]  # upstream changed

    reordered = load("product_demo")
    reordered["jobs"][3]["dependsOn"] = ["job2", "job1", "job3"]
    assert lineage_hashes(parse_plan(reordered))["job4"] != base_lineage["job4"]


def test_lineage_of_a_dependent_plan_follows_the_base() -> None:
    plan = parse_plan({**load("spanish_dependent"), "baseExecutionId": "exec_b"})
    one = lineage_hashes(plan, base_final="f" * 64)
    two = lineage_hashes(plan, base_final="e" * 64)
    assert one["job1"] != two["job1"] and one["job2"] != two["job2"]


def test_srt_is_parsed_at_validation() -> None:
    bad = "1\n00:00:01,000 -> 00:00:02,000\nhi"
    found = problems(
        {"jobs": [gen("a"), {"id": "s", "type": "addSubtitles", "params": {"srt": bad}, "dependsOn": ["a"]}]}
    )
    assert found[0].startswith("s.params.srt: SRT cue 1: expected a timing line")
    good = "1\n00:00:00,000 --> 00:00:01,000\nHola\n\n2\n00:00:01,000 --> 00:00:02,000\n¿Qué tal?\n"
    assert parse_plan(
        {"jobs": [gen("a"), {"id": "s", "type": "addSubtitles", "params": {"srt": good}, "dependsOn": ["a"]}]}
    )


def test_expected_durations_follow_the_graph() -> None:
    from video_pipelines.plan.durations import expected_durations

    plan = parse_plan(load("french_variant"))
    durations = expected_durations(plan)
    assert durations["job1"] == 3 and durations["job4"] == 8.0  # 3 x 3 s - 2 x 0.5 s crossfades
    assert durations["job5"] == 8.0 and durations["job6"] == 8.0
    dependent = parse_plan({**load("spanish_dependent"), "baseExecutionId": "exec_b"})
    assert expected_durations(dependent, base_final=12.5) == {"job1": 12.5, "job2": 12.5}
    assert expected_durations(dependent) == {"job1": None, "job2": None}


def test_the_seed_sdks_own_payload_is_accepted() -> None:
    # The seed SDK's JSON example, byte for byte: "type": "generate" and "output": "$<id>".
    seed = (
        '{"jobs":[{"id":"job1","type":"generate","params":{"prompt":"A sunrise","duration":5},"output":"$job1"},'
        '{"id":"job2","type":"merge","params":{},"dependsOn":["job1"],"output":"$job2"}]}'
    )
    plan = parse_plan(load_plan_json(seed))
    assert [n.operation for n in plan.nodes] == [Operation.GENERATE_VIDEO, Operation.MERGE]
    assert plan.to_wire()["jobs"][0]["type"] == "generateVideo"
