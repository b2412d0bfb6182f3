"""`GET /artifacts/{key}`: local artifacts over HTTP, read-only, without a key (a browser following a link
from the Dagster UI has none): a key names the content's SHA-256, so a URL cannot be guessed. 404 on S3.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import FileResponse

from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.state import StateDep
from video_pipelines.storage import LocalArtifactStore

# Only content keys: a 64-hex name is what makes the URL unguessable, and it keeps the other
# files of the folder (the health probe's, anything a person put there) off the network.
_CONTENT_KEY = re.compile(
    r"(?P<folder>videos|thumbnails)/(?P<prefix>[0-9a-f]{2})/(?P<sha256>[0-9a-f]{64})(?P<suffix>\.mp4|\.srt|\.vtt|\.jpg)"
)
# Captions in UTF-8, said so: SubRip has no way to say it in the file, and a <track> needs text/vtt.
_MEDIA_TYPES = {
    ("videos", ".mp4"): "video/mp4",
    ("videos", ".srt"): "application/x-subrip; charset=utf-8",
    ("videos", ".vtt"): "text/vtt; charset=utf-8",
    ("thumbnails", ".jpg"): "image/jpeg",
}
# The bytes of a content key never change, so a browser may keep them.
_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}

router = APIRouter()


@router.api_route("/artifacts/{key:path}", methods=["GET", "HEAD"], include_in_schema=False)
def artifact(key: str, state: StateDep) -> FileResponse:
    """Serve a stored video (`video/mp4`, with HTTP Range requests), its captions (SubRip, WebVTT) or thumbnail."""
    store = state.artifacts()
    if not isinstance(store, LocalArtifactStore):
        raise ApiProblem(
            404, "artifacts are served here only from local storage; this deployment's result URLs point at S3"
        )
    match = _CONTENT_KEY.fullmatch(key)
    media_type = _MEDIA_TYPES.get((match["folder"], match["suffix"])) if match else None
    if match is None or media_type is None or not match["sha256"].startswith(match["prefix"]):
        raise ApiProblem(
            404,
            "no such artifact: expected videos/<sha256[:2]>/<sha256>.mp4 (or .srt, .vtt) "
            "or thumbnails/<sha256[:2]>/<sha256>.jpg",
        )
    path = store.local_path(key)
    # A symlink placed in the folder must not lead out of it.
    if path is None or not path.resolve().is_relative_to(store.root):
        raise ApiProblem(404, f"no artifact {key} in this deployment's storage")
    return FileResponse(path, media_type=media_type, headers=_HEADERS)
