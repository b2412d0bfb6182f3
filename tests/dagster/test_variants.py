"""Variants reuse their base's materialized results: the reuse core and the job, on real media."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.errors import PlanValidationError
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.plan import parse_plan
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import Action, BaseExecution, BaseNode, resolve

from ..conftest import MediaServer
from ..media import dominant_frequency, local_path_of, make_tone, pcm_mono
from .harness import node_results, run_plan_in_process

BASE_PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "job1", "type": "generateVideo", "params": {"prompt": "Scene 1", "duration": 1, "resolution": 90}},
        {"id": "job2", "type": "generateVideo", "params": {"prompt": "Scene 2", "duration": 1, "resolution": 90}},
        {"id": "job3", "type": "merge", "params": {"transition": "crossfade"}, "dependsOn": ["job1", "job2"]},
    ]
}


def french_variant(base_id: str, audio_url: str) -> dict[str, Any]:
    plan = copy.deepcopy(BASE_PLAN)
    plan["baseExecutionId"] = base_id
    plan["jobs"] += [
        {"id": "job4", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["job3"]},
        {
            "id": "job5",
            "type": "addSubtitles",
            "params": {"text": "Bonjour !", "language": "fr"},
            "dependsOn": ["job4"],
        },
    ]
    return plan


def executed_nodes(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        event.step_key.split("[", 1)[1].rstrip("]")
        for event in result.all_events
        if event.event_type_value == "STEP_START" and event.step_key and "[" in event.step_key
    }


# --- the pure core ------------------------------------------------------------------------------


def fake_result(tag: str) -> VideoResult:
    return VideoResult(f"file:///{tag}.mp4", 1.0, 160, 90, "16:9", 10, tag * 64, "completed")


def base_from(plan_wire: dict[str, Any], execution_id: str = "exec_base") -> BaseExecution:
    plan = parse_plan(plan_wire)
    resolved = resolve(plan)
    from video_pipelines.plan.model import normalised_node_params

    nodes = {
        node.id: BaseNode(
            node.id,
            node.operation.value,
            resolved.lineage[node.id],
            fake_result(node.id[-1]),
            normalised_node_params(node),
        )
        for node in plan.nodes
    }
    return BaseExecution(execution_id, nodes, plan.nodes[-1].id)


def test_resolve_reuses_same_lineage_and_explains_recomputes() -> None:
    base = base_from(BASE_PLAN)
    variant = copy.deepcopy(BASE_PLAN)
    variant["jobs"][1]["params"]["prompt"] = "Scene 2, in French"
    variant["baseExecutionId"] = "exec_base"
    resolved = resolve(parse_plan(variant), base)
    assert resolved.decisions["job1"].action is Action.REUSE
    assert resolved.decisions["job1"].reused_from == "exec_base"
    assert resolved.decisions["job2"] == resolved.decisions["job2"].__class__(
        "job2", Action.RUN, "params differ from base"
    )
    assert resolved.decisions["job3"].action is Action.RUN
    assert "inputs differ" in resolved.decisions["job3"].reason
    assert resolved.run_levels() == {"job2": 0, "job3": 1}


def test_resolve_colliding_ids_of_another_operation_never_reuse() -> None:
    base = base_from(BASE_PLAN)
    dependent = {
        "baseExecutionId": "exec_base",
        "jobs": [
            {"id": "job1", "type": "lipSync", "params": {"audioUrl": "https://x/es.mp3"}},
            {"id": "job2", "type": "addSubtitles", "params": {"text": "¡Hola!"}, "dependsOn": ["job1"]},
        ],
    }
    resolved = resolve(parse_plan(dependent), base)
    assert all(d.action is Action.RUN for d in resolved.decisions.values())
    assert "base's job1 ran generateVideo, this one runs lipSync" in resolved.decisions["job1"].reason
    plan = resolved.plan
    assert resolved.inputs(plan.node("job1"), {}) == [base.nodes["job3"].result]  # the base's final output


def test_resolve_dependency_on_a_base_only_node() -> None:
    base = base_from(BASE_PLAN)
    plan = parse_plan(
        {
            "baseExecutionId": "exec_base",
            "jobs": [{"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["job2"]}],
        },
        external_nodes=set(base.nodes),
    )
    resolved = resolve(plan, base)
    assert resolved.inputs(plan.node("square"), {}) == [base.nodes["job2"].result]
    with pytest.raises(PlanValidationError, match="ghost"):
        resolve(
            parse_plan(
                {
                    "baseExecutionId": "exec_base",
                    "jobs": [{"id": "r", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["ghost"]}],
                }
            ),
            base,
        )


# --- the job -------------------------------------------------------------------------------------


def test_variant_reuses_base_results_without_running_them(dagster_home: Path, media_server: MediaServer) -> None:
    make_tone(media_server.root / "french.mp3", 1000, 3)
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(BASE_PLAN, instance)
        assert base.success
        variant = run_plan_in_process(french_variant(base.run_id, media_server.url("french.mp3")), instance)
    assert variant.success
    assert executed_nodes(variant) == {"job4", "job5"}  # reused nodes never execute
    base_videos, variant_videos = node_results(base), node_results(variant)
    for node_id in ("job1", "job2", "job3"):
        assert variant_videos[node_id].sha256 == base_videos[node_id].sha256
    statuses = {
        event.step_materialization_data.materialization.metadata["node_id"].value: (
            event.step_materialization_data.materialization.metadata["status"].value,
            event.step_materialization_data.materialization.metadata["reused_from"].value,
        )
        for event in variant.get_asset_materialization_events()
    }
    assert statuses["job1"] == ("reused", base.run_id) and statuses["job5"] == ("completed", "")
    french = local_path_of(variant_videos["job4"].url)
    assert abs(dominant_frequency(pcm_mono(french)) - 1000) < 30


def test_changed_params_are_recomputed_and_logged(dagster_home: Path, media_server: MediaServer) -> None:
    make_tone(media_server.root / "french.mp3", 1000, 3)
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(BASE_PLAN, instance)
        plan = french_variant(base.run_id, media_server.url("french.mp3"))
        plan["jobs"][1]["params"]["prompt"] = "Scene 2, autre version"
        variant = run_plan_in_process(plan, instance)
        logs = [entry.user_message for entry in instance.all_logs(variant.run_id)]
    assert variant.success
    assert executed_nodes(variant) == {"job2", "job3", "job4", "job5"}
    assert "job2: run: params differ from base" in logs
    assert node_results(variant)["job2"].sha256 != node_results(base)["job2"].sha256


def test_dependent_plan_attaches_to_the_base_final_video(dagster_home: Path, media_server: MediaServer) -> None:
    make_tone(media_server.root / "spanish.mp3", 600, 3)
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(BASE_PLAN, instance)
        dependent = {
            "baseExecutionId": base.run_id,
            "jobs": [
                {"id": "job1", "type": "lipSync", "params": {"audioUrl": media_server.url("spanish.mp3")}},
                {
                    "id": "job2",
                    "type": "addSubtitles",
                    "params": {"text": "¡Hola!", "language": "es"},
                    "dependsOn": ["job1"],
                },
            ],
        }
        result = run_plan_in_process(dependent, instance)
    assert result.success
    assert executed_nodes(result) == {"job1", "job2"}
    videos = node_results(result)
    base_final = probe(local_path_of(node_results(base)["job3"].url))
    spanish = probe(local_path_of(videos["job2"].url))
    assert abs(spanish.duration - base_final.duration) < 0.1
    assert abs(dominant_frequency(pcm_mono(local_path_of(videos["job1"].url))) - 600) < 30


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.event_specific_data.error.message)  # type: ignore[union-attr]


def test_variant_of_a_missing_or_failed_base_is_refused(dagster_home: Path, media_server: MediaServer) -> None:
    broken = {
        "jobs": [
            {"id": "job1", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 90}},
            {
                "id": "job2",
                "type": "lipSync",
                "params": {"audioUrl": media_server.url("missing.mp3")},
                "dependsOn": ["job1"],
            },
        ]
    }
    with dg.DagsterInstance.get() as instance:
        missing = run_plan_in_process({**BASE_PLAN, "baseExecutionId": "exec_nope"}, instance)
        failed = run_plan_in_process(broken, instance)
        assert not failed.success
        on_failed = run_plan_in_process({**BASE_PLAN, "baseExecutionId": failed.run_id}, instance)
    assert not missing.success and not on_failed.success
    assert "plan.baseExecutionId: base execution exec_nope does not exist" in failure_message(missing)
    assert f"base execution {failed.run_id} failed" in failure_message(on_failed)
    assert not missing.get_asset_materialization_events() and not on_failed.get_asset_materialization_events()
