"""The `head_starts` resource: how a run's plan nodes run (`nodes.work.RunNodes`), one per run's execution."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from video_pipelines.nodes.environment import NodeEnvironment
from video_pipelines.nodes.work import RunNodes
from video_pipelines.orchestration.resources.artifacts import ArtifactStorage, MediaPolicy, SubmissionStoreResource
from video_pipelines.orchestration.resources.providers import FalResource, GoogleVertexResource, ReplicateResource


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
