"""The Launchpad: Dagster's config editor refuses typos in a plan before launch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.orchestration.config import OperationName, PlanConfig, PriorityName
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.plan import parse_plan
from video_pipelines.plan.params import _BY_SPELLING, Operation
from video_pipelines.vocabulary import Priority


def plan_config(**plan: Any) -> dict[str, Any]:
    return {"ops": {"plan": {"config": plan}}}


def node(type_name: str, key: str = "type") -> dict[str, Any]:
    return {"id": "a", key: type_name, "params": {"prompt": "x"}}


def config_errors(run_config: dict[str, Any]) -> list[dg.EvaluationError]:
    with pytest.raises(dg.DagsterInvalidConfigError) as info:
        dg.validate_run_config(execute_plan_job(), run_config)
    return list(info.value.errors)


def test_config_enums_are_exactly_the_plan_models_spellings() -> None:
    # Dagster's config enum accepts member names: each must be its wire spelling.
    assert all(member.name == member.value for member in [*OperationName, *PriorityName])
    assert {member.value for member in OperationName} == set(_BY_SPELLING)
    assert {member.value for member in PriorityName} == {priority.value for priority in Priority}


@pytest.mark.parametrize("key", ["type", "operation"])
def test_an_unknown_operation_is_refused_by_dagster_config_validation(key: str) -> None:
    [error] = config_errors(plan_config(jobs=[node("generateVidoe", key)]))
    assert f"root:ops:plan:config:jobs[0]:{key}" in error.message
    assert "not in enum type OperationName got generateVidoe" in error.message
    allowed = [value.value for value in error.error_data.config_type_snap.enum_values or []]  # type: ignore[union-attr]
    assert sorted(allowed) == sorted(_BY_SPELLING)


@pytest.mark.parametrize("spelling", sorted(_BY_SPELLING))
def test_every_spelling_the_plan_model_accepts_validates(spelling: str) -> None:
    for key in ("type", "operation"):
        assert dg.validate_run_config(execute_plan_job(), plan_config(jobs=[node(spelling, key)]))
        wire = PlanConfig.model_validate({"jobs": [node(spelling, key)]}).to_wire()
        assert type(wire["jobs"][0][key]) is str and wire["jobs"][0][key] == spelling
        assert Operation.parse(wire["jobs"][0][key]) is _BY_SPELLING[spelling]


def test_priority_is_one_of_high_normal_low() -> None:
    [error] = config_errors(plan_config(jobs=[node("merge")], priority="urgent"))
    assert "root:ops:plan:config:priority" in error.message and "got urgent" in error.message
    assert dg.validate_run_config(execute_plan_job(), plan_config(jobs=[node("merge")], priority="high"))


def test_the_wire_stays_plain_strings() -> None:
    wire = {
        "jobs": [
            {"id": "g", "type": "generate", "params": {"prompt": "x"}},
            {"id": "r", "operation": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["g"]},
        ],
        "priority": "low",
    }
    config = PlanConfig.model_validate(wire)
    assert json.dumps(config.to_wire()) == json.dumps(
        {
            "jobs": [
                {"id": "g", "params": {"prompt": "x"}, "dependsOn": [], "type": "generate"},
                {"id": "r", "params": {"aspectRatio": "9:16"}, "dependsOn": ["g"], "operation": "reframe"},
            ],
            "priority": "low",
        }
    )
    assert type(config.to_wire()["priority"]) is str
    # The sensors' path: a parsed plan, as a RunConfig object, validated against the job.
    from_plan = PlanConfig.from_plan(parse_plan(wire))
    assert from_plan.to_wire()["jobs"][0]["type"] == "generateVideo" and from_plan.to_wire()["priority"] == "low"
    run_config = dg.RunConfig(ops={"plan": from_plan}).to_config_dict()
    assert run_config["ops"]["plan"]["config"]["priority"] == "low"
    assert dg.validate_run_config(execute_plan_job(), run_config)
    assert PlanConfig.model_validate(run_config["ops"]["plan"]["config"]).to_wire() == from_plan.to_wire()


def test_an_empty_plan_fails_in_the_plan_step_before_any_node_runs(dagster_home: Path) -> None:
    # Dagster's config types cannot bound a list's length: `jobs: []` passes its editor, and
    # the `plan` step refuses it with the plan model's message, without a retry.
    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(
            run_config=plan_config(jobs=[]), instance=instance, raise_on_error=False
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "plan"
    assert "plan.jobs: the plan is empty; add at least one job" in str(failure.event_specific_data.error.message)  # type: ignore[union-attr]
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not result.get_asset_materialization_events()
