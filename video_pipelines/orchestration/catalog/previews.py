"""What a node's materialization shows: a thumbnail, a link, the file (stored files are named by SHA-256)."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg

from video_pipelines.errors import StorageError
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.orchestration.catalog.assets import asset_key_for, partition_key
from video_pipelines.plan import PlanNode
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.storage import ArtifactStore
from video_pipelines.vocabulary import NodeState


def node_preview(store: ArtifactStore, result: VideoResult, *, node_id: str) -> dict[str, dg.MetadataValue]:
    try:
        thumbnail_url = store.thumbnail_url(result.sha256)
    except StorageError:
        # The video is done and recorded either way; a storage hiccup only costs the picture.
        thumbnail_url = None
    image = f"![{node_id}]({thumbnail_url})\n\n" if thumbnail_url else ""
    captions = f" · [srt]({result.captions.srt}) · [vtt]({result.captions.vtt})" if result.captions else ""
    return {
        "preview": dg.MetadataValue.md(f"{image}[{result.url}]({result.url}){captions}"),
        "path": dg.MetadataValue.path(str(store.location(store.key_for(result.sha256)))),
    }


def links(result: VideoResult) -> dict[str, dg.UrlMetadataValue]:
    """The video's link and its captions', first in a materialization's metadata: the run page's event log shows
    the first entries of an event, and a url entry as a link."""
    captions = result.captions
    urls = {"url": result.url, **({"captions_srt": captions.srt, "captions_vtt": captions.vtt} if captions else {})}
    return {name: dg.MetadataValue.url(url) for name, url in urls.items()}


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
            **links(result),
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
