"""Google Vertex AI video generation (Veo) behind the `VideoGenerator` protocol.

Life cycle of one clip:

1. `POST {base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:predictLongRunning`
   with the prompt and `aspectRatio`, `durationSeconds`, `sampleCount` 1 and `seed`; Vertex
   answers an operation `{"name": "projects/.../operations/<id>"}`.
2. The operation name goes to the node's `JobLedger` before any waiting, so a retried step
   resumes polling it instead of paying for a second clip.
3. `POST .../models/{model}:fetchPredictOperation` with `{"operationName": name}` every
   `poll_interval` seconds until `"done": true`; a done operation holds either `error`
   (google.rpc.Status) or `response.videos[0]` with `bytesBase64Encoded` (the MP4, written to
   `out`) or `gcsUri`. `raiMediaFilteredCount` / `raiMediaFilteredReasons` say why no video
   came back when the safety filters removed it.

No `storageUri` is sent, so Vertex returns the clip inline. A `gcsUri` answer is refused
with a clear error rather than downloaded: reading it needs a bucket this deployment does not
configure and storage permissions the service account may not have. Vertex fails operations
whose video is too large to return inline ("an output storage uri is required"); that
message reaches the user as is.

Failures: 429, 5xx and connection errors are retried with exponential backoff, honouring
`Retry-After`, at most `max_attempts` times, then `TransientProviderError`; other 4xx raise
`ProviderError` with Google's `error.message` and the HTTP status. A 401 renews the access
token once. The node's `timeout` bounds the whole call: past it the operation is cancelled
(best effort, `POST {base}/v1/{name}:cancel`) and `ProviderError` is raised. Any other
exception while waiting (an interrupt: Ctrl-C, a Dagster run cancel) cancels the operation
too before it propagates; a `TransientProviderError` does not, so the retried step resumes.

Every request goes through the SSRF guard (`video_pipelines.net`): the Vertex endpoint and
the key file's `token_uri` must be public addresses, or allowed in
`VIDEO_PIPELINES_ALLOWED_HOSTS` (a private gateway, a test server).

Environment (read only by `VertexVeoProvider.from_env`; the constructor takes explicit values):

- `GOOGLE_APPLICATION_CREDENTIALS`: path of the service-account JSON key file (required).
- `GOOGLE_CLOUD_PROJECT`: project id; default: `project_id` of the key file.
- `GOOGLE_CLOUD_LOCATION`: Vertex region; default `us-central1`.
- `GOOGLE_VERTEX_BASE_URL`: endpoint override for gateways and tests; default
  `https://{location}-aiplatform.googleapis.com`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import json
import math
import os
import random
import re
import ssl
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from video_pipelines.errors import (
    BlockedDestinationError,
    FetchError,
    ProviderError,
    TransientError,
    TransientFetchError,
    TransientProviderError,
)
from video_pipelines.net import AllowedHosts, certificate_error, open_pinned, redact_url, resolve_destination
from video_pipelines.providers.base import GenerationRequest, JobLedger
from video_pipelines.providers.google_auth import CLOUD_PLATFORM_SCOPE, AccessTokens, ServiceAccountKey

CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
LOCATION_ENV = "GOOGLE_CLOUD_LOCATION"
BASE_URL_ENV = "GOOGLE_VERTEX_BASE_URL"

DEFAULT_MODEL = "veo-2.0-generate-001"
DEFAULT_LOCATION = "us-central1"
SUPPORTED_ASPECT_RATIOS = ("16:9", "9:16")

# Path segments taken from configuration or a plan's `model` param: nothing that could climb
# to another endpoint with our bearer token.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_OPERATION = re.compile(
    r"projects/[A-Za-z0-9._:-]+/locations/[A-Za-z0-9._-]+/publishers/google/models/[A-Za-z0-9._-]+"
    r"/operations/[A-Za-z0-9_-]+"
)
_SLICE = 0.1
_MESSAGE_LIMIT = 500


class _DeadlineReached(Exception):
    """The node's timeout passed (internal: turned into cancel + ProviderError by `generate`)."""


class _Retryable(Exception):
    """One attempt failed in a way worth another (internal to `_call`)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def google_error_message(body: bytes) -> str | None:
    """The human part of a Google error body: `error.message` (APIs) or `error_description` (OAuth)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        status = error.get("status")
        if isinstance(message, str) and message:
            text = f"{status}: {message}" if isinstance(status, str) and status else message
            return text[:_MESSAGE_LIMIT]
    if isinstance(error, str) and error:
        description = parsed.get("error_description")
        text = f"{error}: {description}" if isinstance(description, str) and description else error
        return text[:_MESSAGE_LIMIT]
    return None


def _sleep(seconds: float, deadline: float | None) -> None:
    """Sleep in short slices (an interrupt lands quickly); raise _DeadlineReached if the deadline comes first."""
    until = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise _DeadlineReached
        left = until - now
        if left <= 0:
            return
        if deadline is not None:
            left = min(left, deadline - now)
        time.sleep(min(_SLICE, left))


class VertexVeoProvider:
    """Generates clips with Veo on Vertex AI, authenticated as a service account."""

    name = "google-cloud"

    # Tunables (instance attributes may override them, e.g. in tests).
    max_attempts: int = 5
    backoff: float = 1.0
    max_retry_wait: float = 60.0
    request_timeout: float = 60.0
    cancel_timeout: float = 10.0
    max_response_bytes: int = 512 * 1024 * 1024

    def __init__(
        self,
        credentials_file: Path,
        *,
        project: str | None = None,
        location: str = DEFAULT_LOCATION,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        allowed: AllowedHosts,
        poll_interval: float = 5.0,
    ) -> None:
        key = ServiceAccountKey.load(Path(credentials_file))
        project = project or key.project_id
        if not project:
            raise ProviderError(
                f"provider 'google-cloud' has no project: {credentials_file} has no project_id; set {PROJECT_ENV}"
            )
        for what, value in (("project", project), ("location", location), ("model", model)):
            if not _SEGMENT.fullmatch(value):
                raise ProviderError(f"provider 'google-cloud': {what} {value!r} is not a valid Vertex AI {what} name")
        if base_url is None:
            host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
            base_url = f"https://{host}"
        if not base_url.startswith(("https://", "http://")):
            raise ProviderError(f"provider 'google-cloud': base URL {redact_url(base_url)} is not an http(s) URL")
        if poll_interval <= 0:
            raise ProviderError("provider 'google-cloud': poll_interval must be positive")
        self.project = project
        self.location = location
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.allowed = allowed
        self.poll_interval = poll_interval
        self._tokens = AccessTokens(key, CLOUD_PLATFORM_SCOPE)
        self._ssl_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return (
            f"VertexVeoProvider(project={self.project!r}, location={self.location!r}, "
            f"model={self.model!r}, base_url={redact_url(self.base_url)!r})"
        )

    @classmethod
    def from_env(cls, allowed: AllowedHosts, environ: Mapping[str, str] | None = None) -> VertexVeoProvider:
        """Configure from the environment (see the module docstring); `environ` defaults to `os.environ`."""
        env = os.environ if environ is None else environ
        credentials = env.get(CREDENTIALS_ENV, "").strip()
        if not credentials:
            raise ProviderError(
                f"provider 'google-cloud' is not configured: set {CREDENTIALS_ENV} to the path of a "
                "service-account JSON key file"
            )
        return cls(
            Path(credentials),
            project=env.get(PROJECT_ENV, "").strip() or None,
            location=env.get(LOCATION_ENV, "").strip() or DEFAULT_LOCATION,
            base_url=env.get(BASE_URL_ENV, "").strip() or None,
            allowed=allowed,
        )

    # The protocol

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        """Generate the clip `request` describes with Veo and write it to `out` (see the module docstring)."""
        model = self._model_for(request)
        parameters = self._parameters(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        name = ledger.recall()
        if name is not None:
            self._check_operation_name(name, "the ledger holds")
        else:
            try:
                name = self._start(model, request.prompt, parameters, deadline)
            except _DeadlineReached:
                raise ProviderError(f"google-cloud: no operation started within the {timeout:g}s timeout") from None
            ledger.remember(name)
        try:
            operation = self._wait(name, deadline)
        except _DeadlineReached:
            self._cancel(name)
            raise ProviderError(
                f"google-cloud operation {name} did not finish within the {timeout:g}s timeout; cancelled it"
            ) from None
        except TransientError:
            raise  # left running: the retried step resumes it from the ledger
        except BaseException:
            self._cancel(name)
            raise
        self._write_video(operation, name, out)

    # Request building

    def _model_for(self, request: GenerationRequest) -> str:
        model = request.model or self.model
        if not _SEGMENT.fullmatch(model):
            raise ProviderError(f"google-cloud: model {model!r} is not a Vertex AI model id (e.g. {DEFAULT_MODEL})")
        return model

    def _parameters(self, request: GenerationRequest) -> dict[str, Any]:
        if request.aspect_ratio not in SUPPORTED_ASPECT_RATIOS:
            raise ProviderError(
                f"google-cloud (Veo) renders only {' and '.join(SUPPORTED_ASPECT_RATIOS)}; aspectRatio "
                f"{request.aspect_ratio!r} is not supported: generate 16:9 or 9:16 and add a reframe node "
                f"to {request.aspect_ratio}"
            )
        return {
            "aspectRatio": request.aspect_ratio,
            "durationSeconds": max(1, round(request.duration)),
            "sampleCount": 1,
            "seed": request.seed,
        }

    def _model_url(self, model: str, method: str) -> str:
        return (
            f"{self.base_url}/v1/projects/{self.project}/locations/{self.location}"
            f"/publishers/google/models/{model}:{method}"
        )

    @staticmethod
    def _check_operation_name(name: str, source: str) -> None:
        if not _OPERATION.fullmatch(name):
            raise ProviderError(
                f"google-cloud: {source} {name[:200]!r}, which is not a Vertex AI operation name "
                "(projects/.../locations/.../publishers/google/models/.../operations/...)"
            )

    # The life cycle

    def _start(self, model: str, prompt: str, parameters: dict[str, Any], deadline: float | None) -> str:
        answer = self._call(
            self._model_url(model, "predictLongRunning"),
            {"instances": [{"prompt": prompt}], "parameters": parameters},
            deadline=deadline,
            what=f"starting a {model} generation",
        )
        name = answer.get("name")
        if not isinstance(name, str):
            raise ProviderError("google-cloud: predictLongRunning answered without an operation name")
        self._check_operation_name(name, "predictLongRunning answered")
        return name

    def _wait(self, name: str, deadline: float | None) -> dict[str, Any]:
        # The operation name carries its project, location and model: poll where it was started,
        # even if a resumed step runs with other settings.
        url = f"{self.base_url}/v1/{name.rsplit('/operations/', 1)[0]}:fetchPredictOperation"
        while True:
            operation = self._call(url, {"operationName": name}, deadline=deadline, what=f"polling {name}")
            if operation.get("done") is True:
                return operation
            _sleep(self.poll_interval, deadline)

    def _cancel(self, name: str) -> None:
        """Ask Vertex to stop `name`; best effort (one short attempt, failures ignored)."""
        with contextlib.suppress(Exception):
            self._call(
                f"{self.base_url}/v1/{name}:cancel",
                {},
                deadline=time.monotonic() + self.cancel_timeout,
                what=f"cancelling {name}",
                attempts=1,
            )

    def _write_video(self, operation: Mapping[str, Any], name: str, out: Path) -> None:
        error = operation.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            raise ProviderError(
                f"google-cloud operation {name} failed: {str(message or error)[:_MESSAGE_LIMIT]}"
                + (f" (code {code})" if code is not None else "")
            )
        response = operation.get("response")
        if not isinstance(response, dict):
            raise ProviderError(f"google-cloud operation {name} finished without a response")
        # Vertex answers {"videos": [...]}; the PredictLongRunningResponse reference wraps the same
        # in generateVideoResponse/generatedSamples[].video. Both are read.
        body = response.get("generateVideoResponse", response)
        videos = body.get("videos") if isinstance(body, dict) else None
        if not videos and isinstance(body, dict):
            samples = body.get("generatedSamples") or []
            videos = [s.get("video") for s in samples if isinstance(s, dict)]
        video = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], dict) else None
        if video is None:
            filtered = body.get("raiMediaFilteredCount") if isinstance(body, dict) else None
            if filtered:
                reasons = body.get("raiMediaFilteredReasons") or []
                detail = "; ".join(str(r) for r in reasons)[:_MESSAGE_LIMIT] if isinstance(reasons, list) else ""
                raise ProviderError(
                    f"google-cloud: Veo's safety filters removed the video of operation {name}"
                    + (f": {detail}" if detail else "")
                    + "; change the prompt"
                )
            raise ProviderError(f"google-cloud operation {name} finished without a video")
        encoded = video.get("bytesBase64Encoded")
        if isinstance(encoded, str) and encoded:
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError(f"google-cloud operation {name}: bytesBase64Encoded is not valid base64") from None
            self._save(data, out)
            return
        uri = video.get("gcsUri") or video.get("uri")
        if isinstance(uri, str) and uri:
            raise ProviderError(
                f"google-cloud operation {name} left the video in Cloud Storage ({redact_url(uri)}) instead of "
                "returning it inline; this provider sends no storageUri and does not read buckets, so use a "
                "shorter or lower-resolution clip or another provider"
            )
        raise ProviderError(f"google-cloud operation {name}: the video has neither bytesBase64Encoded nor gcsUri")

    @staticmethod
    def _save(data: bytes, out: Path) -> None:
        if not data:
            raise ProviderError("google-cloud returned an empty video")
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.part")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(out)
        except OSError as exc:
            raise ProviderError(f"cannot write the generated video to {out}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    # HTTP

    def _token(self, deadline: float | None) -> str:
        def exchange(url: str, form: Mapping[str, str]) -> Mapping[str, Any]:
            return self._call(
                url,
                None,
                form=form,
                deadline=deadline,
                what=f"minting an access token at {redact_url(url)}",
                authorized=False,
            )

        return self._tokens.get(exchange)

    def _call(
        self,
        url: str,
        payload: Mapping[str, Any] | None,
        *,
        deadline: float | None,
        what: str,
        form: Mapping[str, str] | None = None,
        authorized: bool = True,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """POST JSON (or a form) to `url` and return the JSON object it answers, retrying what is worth it."""
        if form is not None:
            content = urlencode(dict(form)).encode("ascii")
            content_type = "application/x-www-form-urlencoded"
        else:
            content = json.dumps(payload or {}).encode("utf-8")
            content_type = "application/json"
        limit = attempts or self.max_attempts
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": "video-pipelines"}
            if authorized:
                headers["Authorization"] = f"Bearer {self._token(deadline)}"
            try:
                status, response_headers, body = self._send(url, content, headers, deadline)
                if 200 <= status < 300:
                    return self._json_object(body, what)
                if status == 401 and authorized and not renewed:
                    # A token revoked or expired early: mint another once.
                    self._tokens.invalidate()
                    renewed = True
                    attempt -= 1
                    continue
                detail = google_error_message(body)
                shown = f"HTTP {status}" + (f" ({detail})" if detail else "")
                if status == 429 or status >= 500:
                    raise _Retryable(shown, retry_after_seconds(response_headers.get("retry-after")))
                raise ProviderError(f"google-cloud refused {what}: {shown}")
            except _Retryable as exc:
                if attempt >= limit:
                    raise TransientProviderError(
                        f"google-cloud failed {what}: {exc.reason}; gave up after {attempt} attempt(s), worth a retry"
                    ) from None
                wait = exc.retry_after
                if wait is None:
                    wait = self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                _sleep(min(wait, self.max_retry_wait), deadline)

    def _send(
        self, url: str, content: bytes, headers: Mapping[str, str], deadline: float | None
    ) -> tuple[int, httpx.Headers, bytes]:
        """One POST through the SSRF guard; network failures become _Retryable or ProviderError."""
        total = self.request_timeout
        if deadline is not None:
            total = min(total, deadline - time.monotonic())
            if total <= 0:
                raise _DeadlineReached
        try:
            destination = resolve_destination(url, self.allowed)
        except TransientFetchError as exc:
            raise _Retryable(str(exc)) from None
        except BlockedDestinationError as exc:
            raise ProviderError(f"google-cloud: {exc}") from None
        except FetchError as exc:
            raise ProviderError(f"google-cloud: {exc}") from None
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        try:
            with open_pinned(
                destination,
                "POST",
                headers=headers,
                ssl_context=self._ssl_context,
                timeout=min(self.request_timeout, total),
                content=content,
                total_timeout=total,
            ) as response:
                body = self._read(response, destination.redacted)
                return response.status_code, response.headers, body
        except httpx.TimeoutException as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise _DeadlineReached from None
            raise _Retryable(f"timed out ({type(exc).__name__}) talking to {destination.redacted}") from None
        except httpx.HTTPError as exc:
            certificate = certificate_error(exc)
            if certificate is not None:
                raise ProviderError(
                    f"google-cloud: TLS certificate of {destination.host} not accepted: "
                    f"{certificate.verify_message or certificate}"
                ) from None
            raise _Retryable(f"{type(exc).__name__} talking to {destination.redacted}") from None

    def _read(self, response: httpx.Response, shown: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                limit = self.max_response_bytes
                raise ProviderError(f"google-cloud: the answer of {shown} is larger than the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _json_object(body: bytes, what: str) -> dict[str, Any]:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise ProviderError(f"google-cloud answered {what} with something that is not JSON") from None
        if not isinstance(parsed, dict):
            raise ProviderError(f"google-cloud answered {what} with JSON that is not an object")
        return parsed
