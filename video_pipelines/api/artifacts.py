"""`GET /artifacts/{key}`: stored videos, captions and thumbnails over HTTP, read-only, without a key (a browser
following a link from the Dagster UI has none), and a record of each fetch of a video.

Only content keys: a key names the content's SHA-256, so a URL cannot be guessed, and the other files of the
folder (the health probe's, anything a person put there) stay off the network. A local folder's files are served
here; an S3 bucket's are a 307 to a fresh presigned URL (result URLs point here when `VIDEO_PIPELINES_PUBLIC_URL`
is set and no CDN is), so a result URL outlives the presign lifetime. A GET of a video is recorded as a fetch
(`submissions.fetches`; a client's range requests of one video within a minute are one fetch); HEADs, captions
and thumbnails are not: nobody watches a video through them.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.routes import StateDep
from video_pipelines.errors import StorageError
from video_pipelines.storage import ArtifactStore, LocalArtifactStore
from video_pipelines.submissions.fetches import VideoFetches

log = logging.getLogger(__name__)

router = APIRouter()

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
# A redirect is not kept: each fetch comes back here, is recorded, and gets a presigned URL of its own.
_REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# How long a redirect's presigned URL reads the object: a download or a viewing starts at once; a player that
# comes back later asks this route again, and a URL that leaks is dead within the hour.
REDIRECT_SECONDS = 3600


@router.api_route("/artifacts/{key:path}", methods=["GET", "HEAD"], include_in_schema=False)
def artifact(key: str, request: Request, state: StateDep) -> Response:
    """Serve a stored video (`video/mp4`, with HTTP Range requests), its captions (SubRip, WebVTT) or thumbnail;
    from S3, send the client to a presigned URL of it."""
    store = state.artifacts()
    match = _CONTENT_KEY.fullmatch(key)
    media_type = _MEDIA_TYPES.get((match["folder"], match["suffix"])) if match else None
    if match is None or media_type is None or not match["sha256"].startswith(match["prefix"]):
        raise ApiProblem(
            404,
            "no such artifact: expected videos/<sha256[:2]>/<sha256>.mp4 (or .srt, .vtt) "
            "or thumbnails/<sha256[:2]>/<sha256>.jpg",
        )
    fetch = match["sha256"] if request.method == "GET" and media_type == "video/mp4" else None
    if isinstance(store, LocalArtifactStore):
        path = store.local_path(key)
        # A symlink placed in the folder must not lead out of it.
        if path is None or not path.resolve().is_relative_to(store.root):
            raise ApiProblem(404, f"no artifact {key} in this deployment's storage")
        if fetch is not None:
            _record(state, store, key, fetch, request)
        return FileResponse(path, media_type=media_type, headers=_HEADERS)
    if fetch is not None:
        _record(state, store, key, fetch, request)
    try:
        url = store.direct_url(key, seconds=REDIRECT_SECONDS, method="HEAD" if request.method == "HEAD" else "GET")
    except StorageError as exc:
        raise ApiProblem(503, f"artifact storage cannot give a URL for {key} now: {exc}") from exc
    if url is None:
        raise ApiProblem(404, f"artifacts of {store.describe()} are not served here")
    return RedirectResponse(url, status_code=307, headers=_REDIRECT_HEADERS)


def _record(state: StateDep, store: ArtifactStore, key: str, sha256: str, request: Request) -> None:
    """Record a new fetch of the video (not the same client's again within the window). Serving the video comes
    first: a fetch that cannot be recorded is logged, and the client's next request tries again."""
    client = request.client.host if request.client is not None else ""
    if not state.fetch_window.take(sha256, client):
        return
    try:
        # Only a stored video's fetch is kept: a made-up SHA-256 would fill the table with rows of nothing. A local
        # file was found already; an S3 object is asked for once per client and window.
        if store.local_path(key) is None and not store.exists(key):
            state.fetch_window.forget(sha256, client)
            raise ApiProblem(404, f"no artifact {key} in this deployment's storage")
        VideoFetches(state.store).record(sha256)
    except (sa.exc.SQLAlchemyError, StorageError) as exc:
        state.fetch_window.forget(sha256, client)
        log.warning("the fetch of video %s is not recorded: %s", sha256, exc)
