"""The Definitions of video_pipelines, assembled in one place."""

from __future__ import annotations

import dagster as dg

from video_pipelines.orchestration.catalog.assets import VIDEO_ASSET_SPECS, media_checks
from video_pipelines.orchestration.catalog.retention import catalog_retention
from video_pipelines.orchestration.job.io_managers import StepOutputs
from video_pipelines.orchestration.job.ops import execute_plan
from video_pipelines.orchestration.resources.artifacts import ArtifactStorage, MediaPolicy, SubmissionStoreResource
from video_pipelines.orchestration.resources.nodes import head_starts
from video_pipelines.orchestration.resources.providers import FalResource, GoogleVertexResource, ReplicateResource
from video_pipelines.orchestration.sensors.plans import (
    lost_launches,
    resume_lost_runs,
    submitted_plans,
    webhook_deliveries,
    webhook_on_canceled,
    webhook_on_completed,
    webhook_on_failed,
    webhook_on_started,
)


def build_definitions() -> dg.Definitions:
    artifact_storage, media_policy = ArtifactStorage(), MediaPolicy()
    return dg.Definitions(
        jobs=[execute_plan],
        assets=VIDEO_ASSET_SPECS,
        # Declared for the catalog (blocking as the deployment sets it); evaluated inside execute_plan.
        asset_checks=[media_checks(media_policy.blocking())],
        sensors=[
            submitted_plans,
            resume_lost_runs,
            lost_launches,
            webhook_on_started,
            webhook_on_completed,
            webhook_on_failed,
            webhook_on_canceled,
            webhook_deliveries,
            catalog_retention,
        ],
        resources={
            "artifact_storage": artifact_storage,
            "io_manager": StepOutputs(artifact_storage=artifact_storage),
            "media_policy": media_policy,
            "submissions": SubmissionStoreResource(),
            "replicate": ReplicateResource(),
            "fal": FalResource(),
            "google_cloud": GoogleVertexResource(),
            "head_starts": head_starts,
        },
    )


defs = build_definitions()


def execute_plan_job() -> dg.JobDefinition:
    return defs.resolve_job_def("execute_plan")
