"""fal (queue API): text-to-video, lip-sync and speech-to-text as queued requests.

Request endpoints live under the app id (a model id's first two segments); URLs fal returns are followed
only under `base_url` (the key travels with them). Undeclared inputs are ignored: common names are sent.

A job's id is `<app>/<request id>`: a parked job is checked and canceled by id alone (`job_finished`, `cancel_job`),
and its endpoints need the app. Where the deployment has a public URL, requests are queued with `fal_webhook`, whose
`app` parameter lets the webhook (which names only the request) name the same job id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from video_pipelines.errors import JobFailed, ProviderError, ProviderHttpError
from video_pipelines.providers.base import JobLedger, provider_webhook_url
from video_pipelines.providers.http import ProviderHttp, run_job
from video_pipelines.providers.keyed import ApiKeyProvider, words_from_output
from video_pipelines.providers.models import DEFAULT_MODELS
from video_pipelines.speech import Word, base_language

DEFAULT_BASE_URL = "https://queue.fal.run"
# fal's file storage (its CDN), where local files too large to send inline are uploaded.
DEFAULT_STORAGE_BASE_URL = "https://rest.fal.ai"
STORAGE_BASE_URL_ENV = "FAL_STORAGE_BASE_URL"
DEFAULT_VIDEO_MODEL = DEFAULT_MODELS[("generateVideo", "fal")]
DEFAULT_LIPSYNC_MODEL = DEFAULT_MODELS[("lipSync", "fal")]
DEFAULT_SPEECH_MODEL = DEFAULT_MODELS[("addSubtitles", "fal")]
_RUNNING = frozenset({"IN_QUEUE", "IN_PROGRESS"})
# The parameter of our webhook URL that names the app of the request fal calls back about.
WEBHOOK_APP_PARAMETER = "app"
# An app's segments go into URLs our key is sent to: nothing that could climb to another path.
_APP_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def app_id(model: str) -> str:
    """The app a model id belongs to (its first two path segments), under which requests live."""
    parts = model.strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ProviderError(f"fal: model must be 'owner/app[/path]', got {model!r}")
    return "/".join(parts[:2])


def is_app_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(_APP_SEGMENT.fullmatch(part) for part in parts)


def fal_job_id(app: str, request_id: str) -> str:
    """The job id of request `request_id` of `app`: what ledgers, waits and webhooks name."""
    return f"{app}/{request_id}"


def split_job_id(job_id: str, app: str | None = None) -> tuple[str, str]:
    """(app, request id) of a job id; a bare request id (remembered before ids carried their app) is `app`'s."""
    head, _, request_id = job_id.rpartition("/")
    if not head and app is not None and request_id:
        return app, request_id
    if not is_app_id(head) or not request_id:
        raise ProviderError(f"fal: {job_id[:200]!r} is not a fal job id ('owner/app/<request id>')")
    return head, request_id


def _raise_error(result: dict[str, Any], where: str) -> None:
    """Raise the error a result holds instead of an output (fal answers some failures so)."""
    error = result.get("detail") or result.get("error")
    if error:
        raise ProviderError(f"{where} failed: {error}")


@dataclass(frozen=True)
class _RequestUrls:
    status: str
    response: str
    cancel: str


class FalProvider(ApiKeyProvider):
    """Generates clips, lip-syncs them and transcribes speech with models on fal's queue."""

    name = "fal"
    key_variable = "FAL_KEY"
    key_label = "API key"
    auth_scheme = "Key"
    base_url_variable = "FAL_QUEUE_BASE_URL"
    default_base_url = DEFAULT_BASE_URL
    default_video_model = DEFAULT_VIDEO_MODEL
    default_lipsync_model = DEFAULT_LIPSYNC_MODEL
    default_speech_model = DEFAULT_SPEECH_MODEL
    # fal takes data URIs but advises against them for large files; a local file over 1 MB is
    # uploaded to fal's storage (`_upload`) and sent as its URL. No size limit is published.
    default_max_inline_bytes = 1024 * 1024
    duration_as_text = True
    default_lipsync_input_names = ("video_url", "audio_url")

    def _video_url(self, result: Any, where: str) -> str:
        """The video URL in a request's result: `{"video": {"url"}}`, `{"video": url}` or `{"videos": [...]}`."""
        video = result.get("video")
        if isinstance(video, dict) and isinstance(video.get("url"), str):
            return str(video["url"])
        if isinstance(video, str):
            return video
        videos = result.get("videos")
        first = videos[0] if isinstance(videos, list) and videos else None
        if isinstance(first, dict) and isinstance(first.get("url"), str):
            return str(first["url"])
        _raise_error(result, where)
        raise ProviderError(f"{where} completed without a video URL (result keys: {sorted(result)})")

    def _transcription_input(self, model: str, audio: str, language: str) -> dict[str, Any]:
        return {
            "audio_url": audio,
            "task": "transcribe",
            "language": base_language(language),
            "chunk_level": "word",
            "version": "3",
        }

    def _words(self, output: Any, where: str) -> list[Word]:
        if not any(key in output for key in ("chunks", "segments", "words", "text")):
            _raise_error(output, where)
        return words_from_output(output, where=where)

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
        """The URLs fal `given` for a request when all are under `base_url`, else the ones built for it."""
        urls = [(given or {}).get(f"{kind}_url") for kind in ("status", "response", "cancel")]
        if all(self._under_base(url) for url in urls):
            return _RequestUrls(*(str(url) for url in urls))
        response = f"{self.base_url}/{app}/requests/{quote(request_id, safe='')}"
        return _RequestUrls(status=f"{response}/status", response=response, cancel=f"{response}/cancel")

    def _queue_url(self, model: str, app: str) -> str:
        """Where a request of `model` is queued; with our webhook where the deployment has a public URL."""
        url = f"{self.base_url}/{model.strip('/')}"
        hook = provider_webhook_url(self.name)
        if hook is None:
            return url
        return f"{url}?{urlencode({'fal_webhook': f'{hook}?{urlencode({WEBHOOK_APP_PARAMETER: app})}'})}"

    def _upload(self, path: Path, content_type: str) -> str:
        """Put a local file on fal's storage; its URL. As fal's clients do: `initiate` (with the key) answers
        a pre-signed `upload_url`, where the bytes are PUT without the key."""
        storage = (os.environ.get(STORAGE_BASE_URL_ENV, "").strip() or DEFAULT_STORAGE_BASE_URL).rstrip("/")
        size = path.stat().st_size
        what = f"uploading {path.name} ({size} bytes)"
        body = self._api().call(
            "POST",
            f"{storage}/storage/upload/initiate?storage_type=fal-cdn-v3",
            what=what,
            json={"file_name": path.name, "content_type": content_type},
        )
        upload_url, file_url = body.get("upload_url"), body.get("file_url")
        if not isinstance(upload_url, str) or not upload_url or not isinstance(file_url, str) or not file_url:
            raise ProviderError(f"fal: {what}: the answer has no upload_url and file_url")
        signed = ProviderHttp(self.name, allowed=self.allowed, policy=self.http, credential=self.key_variable)
        signed.send("PUT", upload_url, what=what, content=path.read_bytes(), content_type=content_type)
        return file_url

    def _job(
        self, model: str, inputs: Callable[[], dict[str, Any]], *, timeout: float | None, ledger: JobLedger
    ) -> tuple[str, dict[str, Any]]:
        app = app_id(model)
        known: dict[str, _RequestUrls] = {}
        api = self._api()

        def urls(job_id: str) -> _RequestUrls:
            # A recalled job is polled under its own app, even if the model changed since it was queued.
            return known.get(job_id) or self._urls(*split_job_id(job_id, app))

        def create() -> str:
            what = f"queueing a request for {model}"
            body = api.call("POST", self._queue_url(model, app), what=what, json=inputs())
            request_id = body.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise ProviderError(f"fal: {what}: the answer has no request_id")
            job_id = fal_job_id(app, request_id)
            known[job_id] = self._urls(app, request_id, body)
            return job_id

        def check(job_id: str) -> str | None:
            request_id = split_job_id(job_id, app)[1]
            body = api.call("GET", urls(job_id).status, what=f"polling request {request_id}")
            status = body.get("status")
            if body.get("error"):
                raise JobFailed(f"fal request {request_id} ({model}) failed: {body['error']}")
            if status == "COMPLETED":
                return job_id
            if status in _RUNNING:
                return None
            raise JobFailed(f"fal request {request_id} ({model}) is in an unexpected state: {status!r}")

        def cancel(job_id: str) -> bool:
            return api.cancel_quietly("PUT", urls(job_id).cancel)

        job_id = run_job(
            ledger,
            create=create,
            check=check,
            cancel=cancel,
            provider=self.name,
            timeout=timeout,
            poll_interval=self.poll_interval,
            parkable=True,
        )
        request_id = split_job_id(job_id, app)[1]
        where = f"fal request {request_id} ({model})"
        try:
            result = api.call("GET", urls(job_id).response, what=f"fetching the result of request {request_id}")
        except ProviderHttpError as exc:
            raise ProviderError(f"{where} failed (HTTP {exc.status_code}): {exc.provider_message}") from exc
        return where, result

    def job_finished(self, job_id: str) -> bool:
        """Whether the request left the queue (COMPLETED; an `error` if it failed): the continuation reads which."""
        app, request_id = split_job_id(job_id)
        body = self._api().call("GET", self._urls(app, request_id).status, what=f"polling request {request_id}")
        return body.get("status") not in _RUNNING

    def cancel_job(self, job_id: str) -> bool:
        return self._api().cancel_quietly("PUT", self._urls(*split_job_id(job_id)).cancel)
