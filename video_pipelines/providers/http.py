"""What every remote provider adapter shares: its HTTP client, job polling and remote inputs.

- `ProviderHttp`: one `httpx.Client` per adapter call, sending JSON with the provider's auth
  header. 429, 5xx, connection errors and timeouts are retried with exponential backoff and
  jitter, honouring `Retry-After` (capped); when the attempts run out the error is a
  `TransientProviderError` (the step may be retried). Any other 4xx fails at once with a
  `ProviderHttpError` that carries the HTTP status and the provider's own message. The API
  token never appears in an error.
- `run_job` / `poll_until`: the life of one provider job under a `JobLedger`: resume the job
  the ledger remembers or create one, remember it before waiting, poll it to the end within
  the node's timeout. On expiry, or on any exception while waiting (KeyboardInterrupt,
  Dagster's interrupt, a permanent error), the provider job is canceled (best effort) before
  the error goes on, so nobody pays for a result nobody will collect. Two exceptions are not
  cause to cancel: the job ended on its own (`JobFailed`), or a transient error, after which
  the retried step resumes the same job through the ledger.
- `remote_input`: how a local file reaches a remote model (an http(s) URL as is, else a
  `data:` URI up to a size limit).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import mimetypes
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from video_pipelines.errors import JobFailed, ProviderError, ProviderHttpError, TransientError, TransientProviderError
from video_pipelines.providers.base import JobLedger, LipSyncRequest

T = TypeVar("T")

DEFAULT_MAX_INLINE_BYTES = 20 * 1024 * 1024
CANCEL_TIMEOUT = 5.0
_SLEEP_SLICE = 0.2  # seconds; a signal handled by another thread gets its turn this often
_MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class HttpPolicy:
    """How hard a provider call tries: attempts, backoff (seconds) and the per-request timeout."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The delay a `Retry-After` header asks for (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, policy: HttpPolicy) -> float:
    """Exponential backoff with jitter before retry `attempt + 1` (the ceiling halves stay random)."""
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def sleep_interruptibly(seconds: float) -> None:
    """Sleep in short slices: Dagster's interrupt may arrive through a signal to another thread."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        _sleep(min(_SLEEP_SLICE, remaining))


def _message_in(body: Any) -> str | None:
    if isinstance(body, str):
        return body.strip() or None
    if isinstance(body, list):
        parts = [part for part in (_message_in(item) for item in body) if part]
        return "; ".join(parts) or None
    if isinstance(body, dict):
        if isinstance(body.get("msg"), str):  # one pydantic/FastAPI validation error
            location = ".".join(str(part) for part in body.get("loc", ()) if part != "body")
            return f"{location}: {body['msg']}" if location else str(body["msg"])
        for key in ("detail", "error", "message"):
            found = _message_in(body.get(key))
            if found:
                return found
    return None


def provider_message(response: httpx.Response) -> str:
    """The provider's own explanation of an error answer (`detail` / `error` / `message`), shortened."""
    try:
        message = _message_in(response.json())
    except ValueError:
        message = None
    if not message:
        message = response.text.strip() or response.reason_phrase or "no details"
    return message if len(message) <= _MESSAGE_LIMIT else message[:_MESSAGE_LIMIT] + "…"


_RETRIED_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class ProviderHttp:
    """JSON calls to one provider's API with retries; use as a context manager, one per adapter call."""

    def __init__(
        self,
        provider: str,
        *,
        authorization: str,
        secret: str,
        credential: str,
        policy: HttpPolicy,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self._secret = secret
        self._credential = credential
        self._client = httpx.Client(
            headers={"Authorization": authorization, "Accept": "application/json", "User-Agent": "video-pipelines"},
            timeout=httpx.Timeout(policy.request_timeout, connect=min(10.0, policy.request_timeout)),
            follow_redirects=False,
        )

    def __enter__(self) -> ProviderHttp:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def call(self, method: str, url: str, *, what: str, json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one JSON request (retrying what may pass) and return the JSON object it answers.

        `what` says what the call was for ("creating a prediction for x/y"); it names the call in errors.
        """
        attempts = self.policy.max_attempts
        last = ""
        for attempt in range(1, attempts + 1):
            delay: float | None = None
            try:
                response = self._client.request(method, url, json=json)
            except _RETRIED_TRANSPORT_ERRORS as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                failure = f"{self.provider}: {what} failed: {type(exc).__name__}: {exc}"
                raise ProviderError(self._redact(failure)) from exc
            else:
                if response.is_success:
                    return self._json(response, what)
                status = response.status_code
                message = self._redact(provider_message(response))
                if status == 429 or status >= 500:
                    last = f"HTTP {status} {response.reason_phrase}: {message}"
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    if retry_after is not None:
                        delay = min(retry_after, self.policy.max_retry_after)
                else:
                    hint = f" (check {self._credential})" if status in (401, 403) else ""
                    raise ProviderHttpError(
                        f"{self.provider}: {what} failed: HTTP {status} {response.reason_phrase}: {message}{hint}",
                        status_code=status,
                        provider_message=message,
                    )
            if attempt < attempts:
                sleep_interruptibly(delay if delay is not None else backoff_delay(attempt, self.policy))
        raise TransientProviderError(
            self._redact(f"{self.provider}: {what} failed after {attempts} attempts; last: {last}")
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError(f"{self.provider}: {what}: the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise ProviderError(f"{self.provider}: {what}: expected a JSON object, got {type(body).__name__}")
        return body

    def cancel_quietly(self, method: str, url: str) -> bool:
        """One best-effort attempt with a short timeout; True when the provider accepted it."""
        try:
            response = self._client.request(method, url, timeout=CANCEL_TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL):
            return False
        return response.is_success


def poll_until(
    check: Callable[[], T | None],
    *,
    cancel: Callable[[], object],
    provider: str,
    job_id: str,
    timeout: float | None,
    poll_interval: float,
) -> T:
    """Call `check` every `poll_interval` s until it returns a value; cancel the job if we stop waiting.

    `check` returns None while the job runs and raises `JobFailed` when it ended badly.
    Past `timeout` seconds the job is canceled and a `ProviderError` raised; any other
    exception (except `JobFailed` and transient errors, see the module docstring) cancels the
    job and is re-raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            result = check()
            if result is not None:
                return result
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            sleep_interruptibly(poll_interval if remaining is None else min(poll_interval, remaining))
    except (JobFailed, TransientError):
        raise
    except BaseException:
        cancel()
        raise
    cancel()
    raise ProviderError(f"{provider} job {job_id} did not finish within {timeout:g} s; canceled")


def run_job(
    ledger: JobLedger,
    *,
    create: Callable[[], str],
    check: Callable[[str], T | None],
    cancel: Callable[[str], object],
    provider: str,
    timeout: float | None,
    poll_interval: float,
) -> T:
    """Resume the job `ledger` remembers, or create one and remember it before waiting; poll it to the end."""
    job_id = ledger.recall()
    if job_id is None:
        created = create()
        try:
            ledger.remember(created)
        except BaseException:
            # Not remembered, so a retry could not resume it: nobody would collect its result.
            cancel(created)
            raise
        job_id = created
    found = job_id
    return poll_until(
        lambda: check(found),
        cancel=lambda: cancel(found),
        provider=provider,
        job_id=found,
        timeout=timeout,
        poll_interval=poll_interval,
    )


def remote_input(
    url: str,
    path: Path,
    *,
    provider: str,
    what: str,
    max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
) -> str:
    """What to send a remote model for a file: its http(s) URL as is, else a base64 `data:` URI.

    A `file://` (or other local) URL cannot be read by a remote provider; up to
    `max_inline_bytes` the file travels inline, beyond that ProviderError says what to change.
    """
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProviderError(f"{provider}: cannot read the {what} {path}: {exc}") from exc
    if size > max_inline_bytes:
        raise ProviderError(
            f"{provider}: the {what} is a local file ({size} bytes), larger than the {max_inline_bytes} bytes "
            "that can be sent inline; remote lip-sync needs an artifact store the provider can read: "
            "set VIDEO_PIPELINES_STORAGE_URL to an s3:// store (http URLs)"
        )
    mime = mimetypes.guess_type(path.name)[0] or mimetypes.guess_type(urlsplit(url).path)[0]
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{mime or 'application/octet-stream'};base64,{encoded}"


def lipsync_sources(request: LipSyncRequest, *, provider: str, max_inline_bytes: int) -> tuple[str, str]:
    """The video and the audio of a lip-sync request as a remote model can read them (see `remote_input`)."""
    video = remote_input(
        request.video_url, request.video, provider=provider, what="video", max_inline_bytes=max_inline_bytes
    )
    audio = remote_input(
        request.audio_url, request.audio, provider=provider, what="audio", max_inline_bytes=max_inline_bytes
    )
    return video, audio
