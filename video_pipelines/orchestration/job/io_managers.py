"""Where step outputs live between steps: on S3 beside the artifacts when those are on S3 (any worker
can read them and re-execute a run), else in `$DAGSTER_HOME/storage`; chosen from the same setting.

Quiet: Dagster's pickle IO managers log a line per object besides the events that say it already.
"""

# No `from __future__ import annotations`: Dagster reads resource annotations at runtime.

from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from dagster._core.storage.upath_io_manager import UPathIOManager
from pydantic import Field

from video_pipelines.orchestration.resources.artifacts import ArtifactStorage

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


class StepOutputs(dg.ConfigurableIOManagerFactory):  # type: ignore[type-arg]
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
