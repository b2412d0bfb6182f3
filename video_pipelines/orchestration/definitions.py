"""The Definitions of video_pipelines, assembled in one place."""

from __future__ import annotations

import dagster as dg

from video_pipelines.orchestration.assets import VIDEO_ASSET_SPECS
from video_pipelines.orchestration.config import EXAMPLE_PLAN
from video_pipelines.orchestration.io_managers import StepOutputs
from video_pipelines.orchestration.job import execute_plan, head_starts
from video_pipelines.orchestration.provider_resources import FalResource, GoogleVertexResource, ReplicateResource
from video_pipelines.orchestration.resources import ArtifactStorage, MediaPolicy, SubmissionStoreResource
from video_pipelines.orchestration.sensors import resume_lost_runs, submitted_plans
from video_pipelines.orchestration.webhook_sensors import (
    webhook_deliveries,
    webhook_on_canceled,
    webhook_on_completed,
    webhook_on_failed,
    webhook_on_started,
)


def with_example_plan(job: dg.JobDefinition) -> dg.JobDefinition:
    """`job` as defined, plus a default run config: the example plan, which the Launchpad opens with.

    Every resource's config has a default, so with the plan given the config is complete and
    Launch runs it as it is. Built here rather than with `@dg.job(config=...)` so that job.py keeps
    what a run does and this module what the UI offers; the other job-level settings are carried over.
    """
    return dg.JobDefinition(
        graph_def=job.graph,
        name=job.name,
        description=job.description,
        executor_def=job.executor_def,
        logger_defs=job.loggers if job.has_specified_loggers else None,
        tags=job.tags,
        run_tags=job.run_tags if job.has_separately_defined_run_tags else None,
        metadata=job.metadata,
        hook_defs=job.hook_defs,
        op_retry_policy=job.op_retry_policy,
        owners=job.owners,
        config={"ops": {"plan": {"config": EXAMPLE_PLAN}}},
    )


def build_definitions() -> dg.Definitions:
    artifact_storage = ArtifactStorage()
    job = with_example_plan(execute_plan)
    return dg.Definitions(
        jobs=[job],
        assets=VIDEO_ASSET_SPECS,
        sensors=[
            # The sensor launches the job above: Definitions refuse two jobs of the same name.
            submitted_plans.with_updated_job(job),
            resume_lost_runs,
            webhook_on_started,
            webhook_on_completed,
            webhook_on_failed,
            webhook_on_canceled,
            webhook_deliveries,
        ],
        resources={
            "artifact_storage": artifact_storage,
            # Step outputs beside the artifacts (S3 when they are on S3), readable by every worker.
            "io_manager": StepOutputs(artifact_storage=artifact_storage),
            "media_policy": MediaPolicy(),
            "submissions": SubmissionStoreResource(),
            "replicate": ReplicateResource(),
            "fal": FalResource(),
            "google_cloud": GoogleVertexResource(),
            # Per run: the nodes' environment, and remote nodes started ahead of their steps.
            "head_starts": head_starts,
        },
    )


defs = build_definitions()


def execute_plan_job() -> dg.JobDefinition:
    """`execute_plan` with the Definitions' resources bound, for in-process runs."""
    return defs.resolve_job_def("execute_plan")
