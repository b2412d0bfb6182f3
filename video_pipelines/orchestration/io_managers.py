"""Where step outputs (plan state, node tasks, node results) are kept between the steps of a run.

They live beside the artifacts: on S3 when the artifact store is S3 (dagster-aws's pickle IO
manager, under `<prefix>/dagster-step-outputs/`), so any worker on any machine can read them
and a run can be re-executed from failure on another worker; otherwise in the instance's
storage folder (`$DAGSTER_HOME/storage`, Dagster's default), which only workers sharing that
disk can read. The choice is made when a run starts, from the same setting as the artifact
store (`VIDEO_PIPELINES_STORAGE_URL`), so the two can never disagree.
"""

# No `from __future__ import annotations`: Dagster reads resource annotations at runtime.

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from pydantic import Field

from video_pipelines.orchestration.resources import ArtifactStorage

STEP_OUTPUTS_FOLDER = "dagster-step-outputs"


class StepOutputs(dg.ConfigurableIOManagerFactory):  # type: ignore[type-arg]
    """Step outputs on S3 beside the artifacts when they are on S3, else in `$DAGSTER_HOME/storage`."""

    artifact_storage: ArtifactStorage
    folder: str = Field(default=STEP_OUTPUTS_FOLDER, description="the folder under the S3 store's prefix")

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        store = self.artifact_storage.store()
        bucket = getattr(store, "bucket", None)
        if bucket is None:  # a local folder
            return PickledObjectFilesystemIOManager(base_dir=_instance(context).storage_directory())  # type: ignore[no-untyped-call]
        # Imported here: dagster-aws (and boto3) stay unloaded for runs that store locally.
        from dagster_aws.s3.io_manager import PickledObjectS3IOManager

        from video_pipelines.storage.s3 import S3ArtifactStore

        assert isinstance(store, S3ArtifactStore)
        prefix = f"{store.prefix}/{self.folder}" if store.prefix else self.folder
        return PickledObjectS3IOManager(s3_bucket=bucket, s3_session=store.client, s3_prefix=prefix)


def _instance(context: dg.InitResourceContext) -> dg.DagsterInstance:
    if context.instance is None:
        raise dg.DagsterInvariantViolationError("step outputs need the Dagster instance of the run")
    return context.instance
