"""fal (queue API): text-to-video and lip-sync as queued requests.

`POST {base}/{model}` queues a request and answers its `request_id` with `status_url`,
`response_url` and `cancel_url`. A model id may carry a subpath
(`fal-ai/kling-video/v1.6/standard/text-to-video`); the request endpoints live under the app
id, its first two segments: `GET {base}/{app}/requests/{id}/status` (IN_QUEUE, IN_PROGRESS,
COMPLETED), `GET {base}/{app}/requests/{id}` (the result, e.g. `{"video": {"url": ...}}`),
`PUT {base}/{app}/requests/{id}/cancel`. The URLs fal returns are followed only when they
are under `base_url` (the credentials travel with them); otherwise, and when resuming a
request the ledger remembers, they are built from the app id.

Model inputs differ from model to model; fal's apps ignore inputs they do not declare, so the
common names are sent (`generation_input`; Kling on fal takes `duration` as a string).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from video_pipelines.errors import JobFailed, ProviderError, ProviderHttpError
from video_pipelines.net import fetch_to_file
from video_pipelines.providers.base import GenerationRequest, JobLedger, LipSyncRequest
from video_pipelines.providers.http import ProviderHttp, lipsync_sources
from video_pipelines.providers.keyed import ApiKeyProvider

DEFAULT_BASE_URL = "https://queue.fal.run"
DEFAULT_VIDEO_MODEL = "fal-ai/kling-video/v1.6/standard/text-to-video"
DEFAULT_LIPSYNC_MODEL = "fal-ai/sync-lipsync"
_RUNNING = frozenset({"IN_QUEUE", "IN_PROGRESS"})


def generation_input(request: GenerationRequest) -> dict[str, Any]:
    """The text-to-video inputs fal's video models take, by their common names."""
    return {
        "prompt": request.prompt,
        "duration": str(max(1, round(request.duration))),
        "aspect_ratio": request.aspect_ratio,
        "seed": request.seed,
    }


def lipsync_input(video: str, audio: str) -> dict[str, Any]:
    return {"video_url": video, "audio_url": audio}


def app_id(model: str) -> str:
    """The app a model id belongs to (its first two path segments), under which requests live."""
    parts = model.strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ProviderError(f"fal: model must be 'owner/app[/path]', got {model!r}")
    return "/".join(parts[:2])


def result_video_url(result: dict[str, Any]) -> str | None:
    """The video URL in a request's result: `{"video": {"url"}}`, `{"video": url}` or `{"videos": [...]}`."""
    video = result.get("video")
    if isinstance(video, dict) and isinstance(video.get("url"), str):
        return str(video["url"])
    if isinstance(video, str):
        return video
    videos = result.get("videos")
    if isinstance(videos, list) and videos and isinstance(videos[0], dict) and isinstance(videos[0].get("url"), str):
        return str(videos[0]["url"])
    return None


@dataclass(frozen=True)
class _RequestUrls:
    status: str
    response: str
    cancel: str


class FalProvider(ApiKeyProvider):
    """Generates clips and lip-syncs them with models on fal's queue."""

    name = "fal"
    key_variable = "FAL_KEY"
    key_label = "API key"
    auth_scheme = "Key"
    base_url_variable = "FAL_QUEUE_BASE_URL"
    default_base_url = DEFAULT_BASE_URL
    default_video_model = DEFAULT_VIDEO_MODEL
    default_lipsync_model = DEFAULT_LIPSYNC_MODEL

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        self._run(request.model or self.video_model, generation_input(request), out, timeout=timeout, ledger=ledger)

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        video, audio = lipsync_sources(request, provider=self.name, max_inline_bytes=self.max_inline_bytes)
        inputs = lipsync_input(video, audio)
        self._run(request.model or self.lipsync_model, inputs, out, timeout=timeout, ledger=ledger)

    def _under_base(self, url: Any) -> bool:
        if not isinstance(url, str):
            return False
        try:
            given, base = httpx.URL(url), httpx.URL(self.base_url)
        except httpx.InvalidURL:
            return False
        same_origin = (given.scheme, given.host, given.port) == (base.scheme, base.host, base.port)
        return same_origin and given.path.startswith(base.path.rstrip("/") + "/")

    def _urls(self, app: str, request_id: str, given: dict[str, Any] | None = None) -> _RequestUrls:
        response = f"{self.base_url}/{app}/requests/{quote(request_id, safe='')}"
        built = _RequestUrls(status=f"{response}/status", response=response, cancel=f"{response}/cancel")
        if given is None:
            return built
        urls = (given.get("status_url"), given.get("response_url"), given.get("cancel_url"))
        if all(self._under_base(url) for url in urls):
            return _RequestUrls(*(str(url) for url in urls))
        return built

    def _run(self, model: str, inputs: dict[str, Any], out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        app = app_id(model)
        known: dict[str, _RequestUrls] = {}
        api = self._api()

        def urls(request_id: str) -> _RequestUrls:
            return known.get(request_id) or self._urls(app, request_id)

        def create() -> str:
            what = f"queueing a request for {model}"
            body = api.call("POST", f"{self.base_url}/{model.strip('/')}", what=what, json=inputs)
            request_id = body.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise ProviderError(f"fal: {what}: the answer has no request_id")
            known[request_id] = self._urls(app, request_id, body)
            return request_id

        def check(request_id: str) -> str | None:
            body = api.call("GET", urls(request_id).status, what=f"polling request {request_id}")
            status = body.get("status")
            if body.get("error"):
                raise JobFailed(f"fal request {request_id} ({model}) failed: {body['error']}")
            if status == "COMPLETED":
                return request_id
            if status in _RUNNING:
                return None
            raise JobFailed(f"fal request {request_id} ({model}) is in an unexpected state: {status!r}")

        def cancel(request_id: str) -> bool:
            return api.cancel_quietly("PUT", urls(request_id).cancel)

        request_id = self._await_job(ledger, create=create, check=check, cancel=cancel, timeout=timeout)
        fetch_to_file(self._video_url(api, urls(request_id).response, request_id, model), out, allowed=self.allowed)

    @staticmethod
    def _video_url(api: ProviderHttp, response_url: str, request_id: str, model: str) -> str:
        what = f"fetching the result of request {request_id}"
        try:
            result = api.call("GET", response_url, what=what)
        except ProviderHttpError as exc:
            raise ProviderError(
                f"fal request {request_id} ({model}) failed (HTTP {exc.status_code}): {exc.provider_message}"
            ) from exc
        video_url = result_video_url(result)
        if video_url is None:
            error = result.get("detail") or result.get("error")
            if error:
                raise ProviderError(f"fal request {request_id} ({model}) failed: {error}")
            raise ProviderError(
                f"fal request {request_id} ({model}) completed without a video URL (result keys: {sorted(result)})"
            )
        return video_url
