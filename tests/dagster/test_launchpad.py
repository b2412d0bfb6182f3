"""The Launchpad: the job opens with a plan that runs, and Dagster's config editor refuses typos before launch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.definitions import defs, execute_plan_job
from video_pipelines.orchestration.job.config import EXAMPLE_PLAN, OperationName, PlanConfig, PriorityName
from video_pipelines.orchestration.job.ops import execute_plan
from video_pipelines.plan import parse_plan
from video_pipelines.plan.params import _BY_SPELLING, Operation
from video_pipelines.vocabulary import Priority

from ..media import local_path_of
from .harness import node_results

REPO = Path(__file__).resolve().parents[2]


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


def test_the_job_is_execute_plan_with_the_example_plan_as_default() -> None:
    job = defs.get_job_def("execute_plan")
    assert job.run_config == plan_config(**EXAMPLE_PLAN) == execute_plan.run_config
    assert defs.resolve_sensor_def("submitted_plans").job_name == "execute_plan"
    # With the plan given, every resource's default completes the config: no "Missing required config entry".
    assert dg.validate_run_config(job, job.run_config)
    assert parse_plan(EXAMPLE_PLAN).nodes[2].operation is Operation.MERGE


def test_the_example_plan_runs_and_writes_a_real_mp4(dagster_home: Path) -> None:
    job = execute_plan_job()
    with dg.DagsterInstance.get() as instance:
        # What Launch sends from a fresh Launchpad: the job's default config, as the editor shows it.
        result = job.execute_in_process(run_config=job.run_config, instance=instance)
        assert result.success
    videos = node_results(result)
    assert set(videos) == {"clip1", "clip2", "merged"}
    merged = probe(local_path_of(videos["merged"].url))
    assert abs(merged.duration - 3.5) < 0.2  # two 2 s clips, 0.5 s of crossfade
    assert (merged.width, merged.height) == (1280, 720)
    assert (merged.video_codec, merged.audio_codec) == ("h264", "aac")


def test_a_run_launched_with_no_config_runs_the_example_and_has_a_status(dagster_home: Path) -> None:
    """GraphQL launchRun or `dagster job execute` without config: Dagster stores `{}` and runs the default."""
    from video_pipelines.executions import execution_status
    from video_pipelines.orchestration.run_records import DagsterRunRecords

    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and not run.run_config.get("ops")
        status = execution_status(DagsterRunRecords(instance), None, result.run_id)
    assert status.state.value == "completed" and set(status.nodes) == {"clip1", "clip2", "merged"}


LAUNCHPAD = """
query Launchpad($job: PipelineSelector!, $typo: RunConfigData!) {
  pipelineOrError(params: $job) { ... on Pipeline { presets { name runConfigYaml } } }
  runConfigSchemaOrError(selector: $job) {
    ... on RunConfigSchema { allConfigTypes { ... on EnumConfigType { givenName values { value } } } }
  }
  isPipelineConfigValid(pipeline: $job, mode: "default", runConfigData: $typo) {
    __typename
    ... on RunConfigValidationInvalid { errors { reason message } }
  }
}
"""


@pytest.fixture
def launchpad_context(dagster_home: Path) -> Iterator[Any]:
    with (
        dg.DagsterInstance.get() as instance,
        define_out_of_process_context(str(REPO / "definitions.py"), "defs", instance) as context,
    ):
        yield context


def test_the_launchpad_opens_with_the_example_and_flags_a_typo(launchpad_context: Any) -> None:
    """What the UI asks the webserver: the job's presets, and whether the editor's config is valid."""
    job = {
        "repositoryLocationName": launchpad_context.code_location_names[0],
        "repositoryName": "__repository__",
        "pipelineName": "execute_plan",
    }
    typo = plan_config(jobs=[node("generateVidoe")])
    data = execute_dagster_graphql(launchpad_context, LAUNCHPAD, {"job": job, "typo": typo}).data
    [preset] = data["pipelineOrError"]["presets"]
    assert preset["name"] == "default"
    assert yaml.safe_load(preset["runConfigYaml"]) == plan_config(**EXAMPLE_PLAN)
    validity = data["isPipelineConfigValid"]
    assert validity["__typename"] == "RunConfigValidationInvalid"
    [error] = validity["errors"]
    assert error["reason"] == "RUNTIME_TYPE_MISMATCH"
    assert "root:ops:plan:config:jobs[0]:type not in enum type OperationName got generateVidoe" in error["message"]
    # The editor's autocompletion and type explorer offer the enum's values.
    enums = {t["givenName"]: t["values"] for t in data["runConfigSchemaOrError"]["allConfigTypes"] if t}
    assert {value["value"] for value in enums["OperationName"]} == set(_BY_SPELLING)
    assert {value["value"] for value in enums["PriorityName"]} == {"high", "normal", "low"}
