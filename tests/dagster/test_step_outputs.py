"""Step outputs live beside the artifacts: on S3 when they are on S3, so another worker can re-execute a run."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest

from video_pipelines.orchestration.definitions import STEP_OUTPUTS_FOLDER, execute_plan_job

from ..conftest import MediaServer
from ..media import make_tone
from .harness import node_results, run_plan_in_process


def _plan(audio_url: str) -> dict[str, object]:
    return {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1}},
            {"id": "voice", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["gen"]},
        ]
    }


def test_a_run_is_re_executed_from_failure_with_its_step_outputs_read_from_s3(
    dagster_home: Path,
    s3_endpoint: str,
    s3_bucket: str,
    media_server: MediaServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", f"s3://{s3_bucket}/videos")
    plan = _plan(media_server.url("voice.wav"))  # not there yet: the lipSync node fails
    with dg.DagsterInstance.get() as instance:
        first = run_plan_in_process(plan, instance)
        assert not first.success
        assert set(node_results(first)) == {"gen"}

        keys = [
            item["Key"]
            for item in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]
        ]
        outputs = [key for key in keys if key.startswith(f"videos/{STEP_OUTPUTS_FOLDER}/storage/{first.run_id}/")]
        # What crosses steps: the planned nodes `plan` hands out (a node's video is in its materialization).
        assert sorted(key.rsplit("/", 3)[-3:] for key in outputs) == [["plan", "result", n] for n in ("gen", "voice")]

        # Another worker: no local step outputs at all, only S3 (and the voice track is there now).
        shutil.rmtree(Path(instance.storage_directory()), ignore_errors=True)
        make_tone(media_server.root / "voice.wav", 440, 1.0)
        again = dg.execute_job(
            dg.reconstructable(execute_plan_job),
            instance=instance,
            reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
        )
        assert again.success
        steps = {event.step_key for event in again.all_events if event.is_step_success}
        assert "node[voice]" in steps
        assert "node[gen]" not in steps  # re-executed from failure: the finished node did not run again
        materialized = [
            event.step_materialization_data.materialization.metadata["node_id"].value
            for event in again.all_events
            if event.is_step_materialization
        ]
        assert materialized == ["voice"]


def test_without_s3_step_outputs_stay_in_the_instance_storage_folder(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(
            {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "x", "duration": 1}}]}, instance
        )
        assert result.success
        assert (Path(instance.storage_directory()) / result.run_id / "plan" / "result" / "gen").exists()
