"""Replicate (HTTP API v1): text-to-video and lip-sync as predictions.

A model `owner/name` runs its latest version (`POST /v1/models/{owner}/{name}/predictions`);
`owner/name:version` pins one (`POST /v1/predictions` with `version`). A prediction goes
`starting` -> `processing` -> `succeeded` | `failed` | `canceled`; it is polled with
`GET /v1/predictions/{id}` and canceled with `POST /v1/predictions/{id}/cancel`. Its output
is a URL or a list of URLs, downloaded through the SSRF guard.

Model inputs differ from model to model; Replicate ignores inputs a model does not declare,
so the common names are sent (`generation_input`), and the lip-sync models whose inputs
have other names are listed in `LIPSYNC_INPUT_NAMES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from video_pipelines.errors import JobFailed, ProviderError
from video_pipelines.net import fetch_to_file
from video_pipelines.providers.base import GenerationRequest, JobLedger, LipSyncRequest
from video_pipelines.providers.http import lipsync_sources
from video_pipelines.providers.keyed import ApiKeyProvider

DEFAULT_BASE_URL = "https://api.replicate.com"
# Kling 1.6 takes the plan's duration and aspect ratio (minimax/video-01 ignores both).
DEFAULT_VIDEO_MODEL = "kwaivgi/kling-v1.6-standard"
DEFAULT_LIPSYNC_MODEL = "kwaivgi/kling-lip-sync"

# model (without version) -> (video input name, audio input name); others take `video` and `audio`.
LIPSYNC_INPUT_NAMES: dict[str, tuple[str, str]] = {
    "kwaivgi/kling-lip-sync": ("video_url", "audio_file"),
}
DEFAULT_LIPSYNC_INPUT_NAMES = ("video", "audio")
_VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v")


def generation_input(request: GenerationRequest) -> dict[str, Any]:
    """The text-to-video inputs most Replicate video models take, by their common names."""
    return {
        "prompt": request.prompt,
        "duration": max(1, round(request.duration)),
        "aspect_ratio": request.aspect_ratio,
        "seed": request.seed,
    }


def _model_parts(model: str) -> tuple[str, str, str | None]:
    name, _, version = model.partition(":")
    owner, _, model_name = name.partition("/")
    if not owner or not model_name or "/" in model_name or (":" in model and not version):
        raise ProviderError(f"replicate: model must be 'owner/name' or 'owner/name:version', got {model!r}")
    return owner, model_name, version or None


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
    """Generates clips and lip-syncs them with models hosted on Replicate."""

    name = "replicate"
    key_variable = "REPLICATE_API_TOKEN"
    key_label = "API token"
    auth_scheme = "Bearer"
    base_url_variable = "REPLICATE_API_BASE_URL"
    default_base_url = DEFAULT_BASE_URL
    default_video_model = DEFAULT_VIDEO_MODEL
    default_lipsync_model = DEFAULT_LIPSYNC_MODEL

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.video_model
        self._run(model, generation_input(request), out, timeout=timeout, ledger=ledger)

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.lipsync_model
        video_name, audio_name = LIPSYNC_INPUT_NAMES.get(model.partition(":")[0], DEFAULT_LIPSYNC_INPUT_NAMES)
        video, audio = lipsync_sources(request, provider=self.name, max_inline_bytes=self.max_inline_bytes)
        inputs: dict[str, Any] = {video_name: video, audio_name: audio}
        self._run(model, inputs, out, timeout=timeout, ledger=ledger)

    def _run(self, model: str, inputs: dict[str, Any], out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        owner, model_name, version = _model_parts(model)
        predictions = f"{self.base_url}/v1/predictions"
        api = self._api()

        def create() -> str:
            what = f"creating a prediction for {model}"
            if version is None:
                url = f"{self.base_url}/v1/models/{quote(owner)}/{quote(model_name)}/predictions"
                body = api.call("POST", url, what=what, json={"input": inputs})
            else:
                body = api.call("POST", predictions, what=what, json={"version": version, "input": inputs})
            prediction_id = body.get("id")
            if not isinstance(prediction_id, str) or not prediction_id:
                raise ProviderError(f"replicate: {what}: the answer has no prediction id")
            return prediction_id

        def check(prediction_id: str) -> str | None:
            url = f"{predictions}/{quote(prediction_id, safe='')}"
            body = api.call("GET", url, what=f"polling prediction {prediction_id}")
            status = body.get("status")
            if status == "succeeded":
                found = output_url(body.get("output"))
                if found is None:
                    raise JobFailed(f"replicate prediction {prediction_id} ({model}) succeeded without a video URL")
                return found
            if status == "failed":
                error = body.get("error") or "no error message"
                raise JobFailed(f"replicate prediction {prediction_id} ({model}) failed: {error}")
            if status in ("canceled", "aborted"):
                raise JobFailed(f"replicate prediction {prediction_id} ({model}) was {status}")
            return None

        def cancel(prediction_id: str) -> bool:
            return api.cancel_quietly("POST", f"{predictions}/{quote(prediction_id, safe='')}/cancel")

        video_url = self._await_job(ledger, create=create, check=check, cancel=cancel, timeout=timeout)
        fetch_to_file(video_url, out, allowed=self.allowed)
