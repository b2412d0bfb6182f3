"""Asset specs: one per operation kind; each node result is a partition keyed `<execution id>:<node id>`.

Why a partition per node: keyed by execution alone, an execution's two clips would be one partition and
the UI shows only the latest (Dagster 1.13). The execution id, not the lineage, is what a person holds.
Dynamic partitions, added by `plan` (idempotent; the instance refuses no key); `catalog_retention`
prunes old ones (Dagster suggests at most 100,000). The specs have no function, so only `execute_plan`
writes them. Check specs attach only to an executable definition, hence one non-subsettable
`@multi_asset_check` whose op fails if launched on its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import dagster as dg

from video_pipelines.errors import StorageError
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.operations.checks import DEFAULT_BLOCKING, CheckName, CheckOutcome
from video_pipelines.plan import Operation, PlanNode
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.storage import ArtifactStore
from video_pipelines.vocabulary import NodeState

_DESCRIPTIONS = {
    Operation.GENERATE_VIDEO: "Clips generated from a prompt (local FFmpeg render or an AI provider).",
    Operation.MERGE: "Videos merged from several inputs with cuts, crossfades or fades.",
    Operation.LIP_SYNC: "Videos whose audio track was replaced by, and lip-synced to, a new voice track.",
    Operation.ADD_SUBTITLES: "Videos with subtitles burned in.",
    Operation.REFRAME: "Videos reframed to another aspect ratio (crop, pad or blurred background).",
}


def asset_key_for(operation: Operation) -> dg.AssetKey:
    return dg.AssetKey(["video", operation.snake_name])


def partitions_of(operation: Operation) -> str:
    return f"video_{operation.snake_name}_node_results"


def partition_key(execution_id: str, node_id: str) -> str:
    """One node result's partition: the execution id first, so searching it finds the execution's nodes."""
    return f"{execution_id}:{node_id}"


def add_execution(instance: dg.DagsterInstance, execution_id: str, nodes: Iterable[PlanNode]) -> None:
    keys: dict[Operation, list[str]] = {}
    for node in nodes:
        keys.setdefault(node.operation, []).append(partition_key(execution_id, node.id))
    for operation, operation_keys in keys.items():
        instance.add_dynamic_partitions(partitions_of(operation), operation_keys)


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description
        + " Written by execute_plan runs, never materialized from here: one partition per node result,"
        " named <execution id>:<node id> (search the execution id), holding its video and metadata.",
        group_name="video_pipelines",
        kinds={"video"},
        partitions_def=dg.DynamicPartitionsDefinition(name=partitions_of(operation)),
    )
    for operation, description in _DESCRIPTIONS.items()
]


def media_checks(blocking: Iterable[CheckName] = DEFAULT_BLOCKING) -> dg.AssetChecksDefinition:
    blocks = frozenset(blocking)
    with warnings.catch_warnings():
        # A check's partitions_def is a preview feature of Dagster 1.13; it is what shows each node's own result.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                name.value,
                asset=asset_key_for(operation),
                description=name.description + " Evaluated by execute_plan on each node it runs.",
                blocking=name in blocks,
                partitions_def=dg.DynamicPartitionsDefinition(name=partitions_of(operation)),
            )
            for operation in _DESCRIPTIONS
            for name in CheckName
        ]

    @dg.multi_asset_check(specs=specs, can_subset=False, name="video_media_checks")
    def video_media_checks() -> dg.AssetCheckResult:
        """Media checks run inside execute_plan, on each node it runs: re-run the execution to check again."""
        raise dg.Failure(
            description="media checks run inside execute_plan on each node's video, not on their own: "
            "run the execution again (video-pipelines submit / execute_plan) to check its nodes again",
            allow_retries=False,
        )

    return video_media_checks


def check_evaluation(
    operation: Operation, execution_id: str, node_id: str, outcome: CheckOutcome
) -> dg.AssetCheckEvaluation:
    """A node's media check as its asset check evaluation (a non-blocking failure is a WARN)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key_for(operation),
        check_name=outcome.name.value,
        passed=outcome.passed,
        partition=partition_key(execution_id, node_id),
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        blocking=outcome.blocking,
        description=outcome.message,
        metadata={"node_id": node_id, "execution_id": execution_id, **outcome.metadata},
    )


# What a node's materialization shows: a thumbnail, a link, the file (stored files are named by SHA-256).
def node_preview(store: ArtifactStore, result: VideoResult, *, node_id: str) -> dict[str, dg.MetadataValue]:
    try:
        thumbnail_url = store.thumbnail_url(result.sha256)
    except StorageError:
        # The video is done and recorded either way; a storage hiccup only costs the picture.
        thumbnail_url = None
    image = f"![{node_id}]({thumbnail_url})\n\n" if thumbnail_url else ""
    return {
        "preview": dg.MetadataValue.md(f"{image}[{result.url}]({result.url})"),
        "path": dg.MetadataValue.path(str(store.location(store.key_for(result.sha256)))),
    }


def node_materialization(
    execution_id: str,
    node: PlanNode,
    lineage: str,
    run: NodeRun,
    *,
    state: NodeState,
    artifacts: ArtifactStore,
    carried_from_run: str | None = None,
    check_seconds: float = 0.0,
) -> dg.AssetMaterialization:
    result, reused_from = run.result, run.reused_from
    return dg.AssetMaterialization(
        asset_key=asset_key_for(node.operation),
        partition=partition_key(execution_id, node.id),  # the catalog's way from an execution id to its videos
        description=f"{node.id} of execution {execution_id}"
        + (f" (reused from {reused_from})" if reused_from else "")
        + (f" (completed by run {carried_from_run})" if carried_from_run else ""),
        metadata={
            "execution_id": execution_id,
            "node_id": node.id,
            "operation": node.operation.value,
            "status": state.value,
            "reused_from": reused_from or "",
            "carried_from_run": carried_from_run or "",
            "lineage": lineage,
            "provider": run.provider or "",
            "model": run.model or "",
            "cost_usd": float(run.cost_usd),
            "work_seconds": float(run.seconds),
            "check_seconds": float(check_seconds),  # what the media checks added (0.0: not checked in this run)
            "url": dg.MetadataValue.url(result.url),
            "duration": float(result.duration),
            "width": result.width,
            "height": result.height,
            "aspect_ratio": result.aspect_ratio,
            "size_bytes": result.size_bytes,
            "sha256": result.sha256,
            "result": dg.MetadataValue.json(result.to_wire()),
            **node_preview(artifacts, result, node_id=node.id),
        },
    )


def reused_materializations(
    execution_id: str, resolved: ResolvedPlan, artifacts: ArtifactStore
) -> Iterator[dg.AssetMaterialization]:
    for decision in resolved.reused:
        assert decision.result is not None
        node = resolved.plan.node(decision.node_id)
        computed = decision.carried_from_run is not None and decision.reused_from is None
        yield node_materialization(
            execution_id,
            node,
            resolved.lineage[node.id],
            NodeRun(decision.result, None, 0.0, cost_usd=decision.cost_usd, reused_from=decision.reused_from),
            # A node an earlier run of this execution computed stays completed (and paid for once, there).
            state=NodeState.COMPLETED if computed else NodeState.REUSED,
            carried_from_run=decision.carried_from_run,
            artifacts=artifacts,
        )
