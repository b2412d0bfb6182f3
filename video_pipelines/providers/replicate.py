"""Replicate (HTTP API v1): text-to-video, lip-sync and speech-to-text as predictions.

Undeclared inputs are ignored, so common names are sent (`lipsync_input_names` for others). The default
speech model is a community model, so it is pinned; it takes "german", not "de".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from video_pipelines.errors import JobFailed, ProviderError
from video_pipelines.providers.base import JobLedger, provider_webhook_url
from video_pipelines.providers.http import run_job
from video_pipelines.providers.keyed import ApiKeyProvider, whisper_language_name
from video_pipelines.providers.models import DEFAULT_MODELS
from video_pipelines.speech import base_language

DEFAULT_BASE_URL = "https://api.replicate.com"
DEFAULT_VIDEO_MODEL = DEFAULT_MODELS[("generateVideo", "replicate")]
DEFAULT_LIPSYNC_MODEL = DEFAULT_MODELS[("lipSync", "replicate")]
DEFAULT_SPEECH_MODEL = DEFAULT_MODELS[("addSubtitles", "replicate")]
INCREDIBLY_FAST_WHISPER = DEFAULT_SPEECH_MODEL.partition(":")[0]  # vaibhavs10/incredibly-fast-whisper

_VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v")
# A prediction's statuses once it ended, as its polls and its webhooks say them.
ENDED_STATUSES = ("succeeded", "failed", "canceled", "aborted")


def output_url(output: Any) -> str | None:
    """The video URL in a prediction's output: a URL, a list of URLs (the first video), or {"video": URL}."""
    if isinstance(output, str):
        return output or None
    if isinstance(output, list):
        urls = [item for item in (output_url(entry) for entry in output) if item]
        videos = [url for url in urls if url.split("?", 1)[0].lower().endswith(_VIDEO_SUFFIXES)]
        return next(iter(videos or urls), None)
    if isinstance(output, dict):
        for key in ("video", "url", "output"):
            found = output_url(output.get(key))
            if found:
                return found
    return None


class ReplicateProvider(ApiKeyProvider):
    """Generates clips, lip-syncs them and transcribes speech with models hosted on Replicate."""

    name = "replicate"
    key_variable = "REPLICATE_API_TOKEN"
    key_label = "API token"
    auth_scheme = "Bearer"
    base_url_variable = "REPLICATE_API_BASE_URL"
    default_base_url = DEFAULT_BASE_URL
    default_video_model = DEFAULT_VIDEO_MODEL
    default_lipsync_model = DEFAULT_LIPSYNC_MODEL
    default_speech_model = DEFAULT_SPEECH_MODEL
    # Replicate takes data URIs but recommends them only under 1 MB; a larger local file goes
    # through its files API (`POST /v1/files`), which takes up to 100 MB.
    default_max_inline_bytes = 1024 * 1024
    max_upload_bytes = 100 * 1024 * 1024
    duration_as_text = False
    lipsync_input_names = {"kwaivgi/kling-lip-sync": ("video_url", "audio_file")}
    default_lipsync_input_names = ("video", "audio")

    def _transcription_input(self, model: str, audio: str, language: str) -> dict[str, Any]:
        if model.partition(":")[0] == INCREDIBLY_FAST_WHISPER:
            return {
                "audio": audio,
                "task": "transcribe",
                "language": whisper_language_name(language, provider="replicate"),
                "timestamp": "word",
                "batch_size": 24,
            }
        return {"audio": audio, "language": base_language(language), "word_timestamps": True}

    def _upload(self, path: Path, content_type: str) -> str:
        """Put a local file on Replicate's file store (`POST /v1/files`); the URL its models read it from."""
        size = path.stat().st_size
        limit = self.max_upload_bytes or 0
        if size > limit:
            raise ProviderError(
                f"replicate: the local file {path.name} ({size} bytes) is larger than the {limit} bytes Replicate's "
                "files API takes; a remote model needs an artifact store the provider can read for it: "
                "set VIDEO_PIPELINES_STORAGE_URL to an s3:// store (http URLs)"
            )
        what = f"uploading {path.name} ({size} bytes)"
        body = self._api().call(
            "POST",
            f"{self.base_url}/v1/files",
            what=what,
            upload=("content", path.name, content_type, path.read_bytes()),
        )
        urls = body.get("urls")
        url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError(f"replicate: {what}: the answer has no file URL (urls.get)")
        return url

    def _video_url(self, output: Any, where: str) -> str:
        video_url = output_url(output)
        if video_url is None:
            raise JobFailed(f"{where} succeeded without a video URL")
        return video_url

    def _job(
        self, model: str, inputs: Callable[[], dict[str, Any]], *, timeout: float | None, ledger: JobLedger
    ) -> tuple[str, Any]:
        name, _, version = model.partition(":")
        owner, _, model_name = name.partition("/")
        if not owner or not model_name or "/" in model_name or (":" in model and not version):
            raise ProviderError(f"replicate: model must be 'owner/name' or 'owner/name:version', got {model!r}")
        predictions = f"{self.base_url}/v1/predictions"
        api = self._api()

        def create() -> str:
            what = f"creating a prediction for {model}"
            request: dict[str, Any] = {"input": inputs(), **self._callback()}
            if not version:
                url = f"{self.base_url}/v1/models/{quote(owner)}/{quote(model_name)}/predictions"
                body = api.call("POST", url, what=what, json=request)
            else:
                body = api.call("POST", predictions, what=what, json={"version": version, **request})
            prediction_id = body.get("id")
            if not isinstance(prediction_id, str) or not prediction_id:
                raise ProviderError(f"replicate: {what}: the answer has no prediction id")
            return prediction_id

        def check(prediction_id: str) -> tuple[str, Any] | None:
            body = api.call("GET", self._prediction_url(prediction_id), what=f"polling prediction {prediction_id}")
            status = body.get("status")
            if status == "succeeded":
                return f"replicate prediction {prediction_id} ({model})", body.get("output")
            if status == "failed":
                error = body.get("error") or "no error message"
                raise JobFailed(f"replicate prediction {prediction_id} ({model}) failed: {error}")
            if status in ("canceled", "aborted"):
                raise JobFailed(f"replicate prediction {prediction_id} ({model}) was {status}")
            return None

        return run_job(
            ledger,
            create=create,
            check=check,
            cancel=self.cancel_job,
            provider=self.name,
            timeout=timeout,
            poll_interval=self.poll_interval,
            parkable=True,
        )

    @staticmethod
    def _callback() -> dict[str, Any]:
        """Replicate calls our API when the prediction ends, where the deployment has a public URL."""
        url = provider_webhook_url("replicate")
        return {"webhook": url, "webhook_events_filter": ["completed"]} if url else {}

    def _prediction_url(self, prediction_id: str) -> str:
        return f"{self.base_url}/v1/predictions/{quote(prediction_id, safe='')}"

    def job_finished(self, job_id: str) -> bool:
        body = self._api().call("GET", self._prediction_url(job_id), what=f"polling prediction {job_id}")
        return body.get("status") in ENDED_STATUSES

    def cancel_job(self, job_id: str) -> bool:
        return self._api().cancel_quietly("POST", f"{self._prediction_url(job_id)}/cancel")
