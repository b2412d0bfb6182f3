"""The Definitions load and list the job, its sensors and its resources."""

from __future__ import annotations

import dagster as dg

from video_pipelines.orchestration.definitions import defs

SENSORS = {"submitted_plans", "resume_lost_runs", "lost_launches", "webhook_deliveries", "catalog_retention"}
SENSORS |= {"provider_waits"}
SENSORS |= {f"webhook_on_{event}" for event in ("started", "completed", "failed", "canceled")}
RESOURCES = {
    "artifact_storage",
    "io_manager",
    "media_policy",
    "submissions",
    "replicate",
    "fal",
    "google_cloud",
    "head_starts",
}


def test_the_definitions_list_the_job_its_sensors_and_resources() -> None:
    repository = defs.get_repository_def()
    assert [job.name for job in repository.get_all_jobs() if not job.name.startswith("__")] == ["execute_plan"]
    assert {sensor.name for sensor in repository.sensor_defs} == SENSORS
    assert set(repository.get_top_level_resources()) == RESOURCES


def test_the_sensors_run_by_default_and_each_operation_is_an_asset() -> None:
    repository = defs.get_repository_def()
    assert all(sensor.default_status == dg.DefaultSensorStatus.RUNNING for sensor in repository.sensor_defs)
    assert {spec.key for spec in defs.assets or [] if isinstance(spec, dg.AssetSpec)} >= {
        dg.AssetKey(["video", name]) for name in ("generate_video", "merge", "lip_sync", "add_subtitles", "reframe")
    }
