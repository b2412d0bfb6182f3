"""What a node's asset materialization shows a person: a thumbnail of its video, a link, the file.

Stored files are named by SHA-256; without a picture the catalog cannot tell which is which.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from video_pipelines.errors import StorageError
from video_pipelines.plan.results import VideoResult
from video_pipelines.storage import ArtifactStore


def preview_metadata(
    result: VideoResult, path: str | Path, thumbnail_url: str | None, *, node_id: str
) -> dict[str, dg.MetadataValue]:
    """`preview`: markdown with the thumbnail (when there is one) and a link to the video; `path`: where it is stored.

    The link is the result's URL (an http(s) URL a browser opens when the storage is S3 or the
    local store has an artifacts base URL).
    """
    image = f"![{node_id}]({thumbnail_url})\n\n" if thumbnail_url else ""
    return {
        "preview": dg.MetadataValue.md(f"{image}[{result.url}]({result.url})"),
        "path": dg.MetadataValue.path(str(path)),
    }


def node_preview(store: ArtifactStore, result: VideoResult, *, node_id: str) -> dict[str, dg.MetadataValue]:
    """`preview_metadata` of a result in `store`: its file (or S3 object) and its thumbnail, if one is stored."""
    try:
        thumbnail_url = store.thumbnail_url(result.sha256)
    except StorageError:
        # The video is done and recorded either way; a storage hiccup only costs the picture.
        thumbnail_url = None
    return preview_metadata(result, store.location(store.key_for(result.sha256)), thumbnail_url, node_id=node_id)
