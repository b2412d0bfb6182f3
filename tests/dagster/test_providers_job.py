"""A remote provider inside execute_plan: a local server speaking Replicate's protocol, cost and job ids recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from video_pipelines.executions import execution_status
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.run_records import DagsterRunRecords

from ..media import local_path_of
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate, serving_replicate
from .harness import run_plan_in_process

PLAN = {
    "jobs": [
        {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1, "provider": "replicate"}},
        {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
    ]
}


@pytest.fixture
def replicate(clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReplicate]:
    with serving_replicate(FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1), monkeypatch) as api:
        yield api


def test_a_replicate_node_runs_records_its_cost_and_job_id(dagster_home: Path, replicate: FakeReplicate) -> None:
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(PLAN, instance)
        assert result.success
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        logs = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    gen = status["jobs"]["gen"]
    assert probe(local_path_of(gen["result"]["url"])).video_codec == "h264"
    assert gen["cost"] == pytest.approx(0.05, abs=0.01)  # the default price of kling-v1.6-standard: $0.05/s
    assert status["jobs"]["square"]["cost"] == 0.0 and status["cost"] == gen["cost"]
    [created] = [job_id for job_id in replicate.jobs]
    assert run.tags["video/provider_job/gen"] == created
    materialization = next(
        event.step_materialization_data.materialization
        for event in result.get_asset_materialization_events()
        if event.step_materialization_data.materialization.metadata["node_id"].value == "gen"
    )
    assert materialization.metadata["provider"].value == "replicate"
    assert materialization.metadata["model"].value == "kwaivgi/kling-v1.6-standard"
    assert TOKEN not in json.dumps(run.run_config) + json.dumps(dict(run.tags)) + logs

    # A variant that reuses the provider's clip pays nothing for it.
    with dg.DagsterInstance.get() as instance:
        variant = run_plan_in_process({**PLAN, "baseExecutionId": result.run_id}, instance)
        assert variant.success
        variant_status = execution_status(DagsterRunRecords(instance), None, variant.run_id).to_wire()
    assert variant_status["jobs"]["gen"]["status"] == "reused" and variant_status["cost"] == 0.0
    assert len(replicate.jobs) == 1


def test_an_unconfigured_provider_fails_the_node_with_a_clear_error(
    dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(PLAN, instance)
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
    assert not result.success and status["status"] == "failed"
    assert "gen (generateVideo) failed: provider 'replicate' is not configured" in status["error"]
    assert "REPLICATE_API_TOKEN" in status["error"]


def test_a_provider_output_that_is_not_a_video_fails_the_node_clearly(
    dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=b"<html>quota exceeded</html>", polls_to_finish=1)
    with serving_replicate(api, monkeypatch), dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(PLAN, instance)
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
    assert not result.success and status["jobs"]["gen"]["status"] == "failed"
    assert status["error"].startswith("gen (generateVideo) failed:")
    assert "output.mp4" in status["error"] or "video" in status["error"].lower()
