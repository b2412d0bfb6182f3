"""The Definitions of video_pipelines, assembled in one place, and the resources that tie the others together.

Step outputs live between steps on S3 beside the artifacts when those are on S3 (any worker can read them
and re-execute a run), else in `$DAGSTER_HOME/storage`; chosen from the same setting. Quiet: Dagster's
pickle IO managers log a line per object besides the events that say it already.
"""

# No `from __future__ import annotations`: Dagster reads resource annotations at runtime.

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from dagster._core.storage.upath_io_manager import UPathIOManager
from pydantic import Field

from video_pipelines.nodes.environment import NodeEnvironment
from video_pipelines.nodes.work import RunNodes
from video_pipelines.orchestration.catalog.assets import VIDEO_ASSET_SPECS, media_checks
from video_pipelines.orchestration.catalog.retention import catalog_retention
from video_pipelines.orchestration.job.ops import execute_plan
from video_pipelines.orchestration.resources.artifacts import (
    ArtifactStorage,
    FalResource,
    GoogleVertexResource,
    MediaPolicy,
    ReplicateResource,
    SubmissionStoreResource,
)
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
from video_pipelines.orchestration.sensors.waits import provider_waits

STEP_OUTPUTS_FOLDER = "dagster-step-outputs"


class _Quiet(UPathIOManager):
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._get_path(context)  # op outputs are never partitioned: one path each, as Dagster's own
        self.make_directory(path.parent)
        self.dump_to_path(context=context, obj=obj, path=path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), **self.get_metadata(context, obj)})

    def load_input(self, context: dg.InputContext) -> Any:
        return self.load_from_path(context=context, path=self._get_path(context))


class QuietFilesystemIOManager(_Quiet, PickledObjectFilesystemIOManager):
    pass


class StepOutputs(dg.ConfigurableIOManagerFactory[dg.IOManager]):
    """Step outputs on S3 beside the artifacts when they are on S3, else in `$DAGSTER_HOME/storage`."""

    artifact_storage: ArtifactStorage
    folder: str = Field(default=STEP_OUTPUTS_FOLDER, description="the folder under the S3 store's prefix")

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        store = self.artifact_storage.store()
        bucket = getattr(store, "bucket", None)
        if bucket is None:  # a local folder
            if context.instance is None:
                raise dg.DagsterInvariantViolationError("step outputs need the Dagster instance of the run")
            return QuietFilesystemIOManager(base_dir=context.instance.storage_directory())  # type: ignore[no-untyped-call]
        # Imported here: dagster-aws (and boto3) stay unloaded for runs that store locally.
        from dagster_aws.s3.io_manager import PickledObjectS3IOManager

        from video_pipelines.storage.s3 import S3ArtifactStore

        class QuietS3IOManager(_Quiet, PickledObjectS3IOManager):
            pass

        assert isinstance(store, S3ArtifactStore)
        prefix = f"{store.prefix}/{self.folder}" if store.prefix else self.folder
        return QuietS3IOManager(s3_bucket=bucket, s3_session=store.client, s3_prefix=prefix)


@dg.resource(
    description="How a run's plan nodes run: their environment, and the remote nodes started ahead of their steps.",
    required_resource_keys={"artifact_storage", "media_policy", "replicate", "fal", "google_cloud", "submissions"},
)
def head_starts(init_context: dg.InitResourceContext) -> Iterator[RunNodes]:
    """One per run's execution (in-process: the whole run); the work started ahead ends with it."""
    resources = init_context.resources
    artifact_storage: ArtifactStorage = resources.artifact_storage
    media_policy: MediaPolicy = resources.media_policy
    submissions: SubmissionStoreResource = resources.submissions
    replicate: ReplicateResource = resources.replicate
    fal: FalResource = resources.fal
    google_cloud: GoogleVertexResource = resources.google_cloud

    def make_env() -> NodeEnvironment:
        return NodeEnvironment(
            store=artifact_storage.store(),
            allowed_hosts=media_policy.hosts(),
            timeout=media_policy.operation_timeout_seconds,
            remote={"replicate": replicate.factory(), "fal": fal.factory(), "google-cloud": google_cloud.factory()},
        )

    # A typo in the blocking checks fails the run here, before any node runs, naming the setting.
    nodes = RunNodes(make_env, submissions.store, blocking=media_policy.blocking())
    try:
        yield nodes
    finally:
        abandoned = nodes.started.close()
        if abandoned and init_context.log is not None:
            init_context.log.warning(
                f"{', '.join(sorted(abandoned))}: started ahead, abandoned when the run ended; "
                "their provider jobs were canceled"
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
            provider_waits,
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
