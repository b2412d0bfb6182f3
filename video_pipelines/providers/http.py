"""What every remote provider adapter shares: its HTTP client, job polling and remote inputs.

429, 5xx and transport errors are retried (Retry-After honoured), a 401 renews the credential once.
A job is canceled on expiry or any exception while waiting, except `JobFailed` and transient errors
(the retried step resumes it), so nobody pays for a result nobody collects.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from video_pipelines.errors import (
    FetchError,
    JobFailed,
    ProviderError,
    ProviderHttpError,
    ProviderUnavailable,
    TransientError,
    TransientFetchError,
    TransientProviderError,
)
from video_pipelines.net import (
    AllowedHosts,
    Destination,
    certificate_error,
    open_pinned,
    redact_url,
    resolve_destination,
    shared_ssl_context,
)
from video_pipelines.net.retrying import backoff_delay, parse_retry_after
from video_pipelines.providers.base import JobLedger
from video_pipelines.providers.context import (
    Admission,
    circuit_admission,
    circuit_failed,
    circuit_succeeded,
    may_park,
    may_skip_open_circuit,
    provider_slot,
    report_provider_error,
    scoped,
    waits_for_circuit,
)
from video_pipelines.storage.factory import ARTIFACTS_BASE_URL_ENV
from video_pipelines.telemetry.tracing import http_client_span

T = TypeVar("T")

DEFAULT_MAX_INLINE_BYTES = 20 * 1024 * 1024
_SLEEP_SLICE = 0.2  # seconds; a signal handled by another thread gets its turn this often
_MESSAGE_LIMIT = 500
_HEADERS = {"Accept": "application/json", "User-Agent": "video-pipelines"}
_RETRIED_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, TransientFetchError)


@dataclass(frozen=True)
class HttpPolicy:
    """How hard a provider call tries: attempts, backoff and timeouts (seconds), the largest answer it reads."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    request_timeout: float = 30.0
    cancel_timeout: float = 5.0
    max_response_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ProviderError(f"HttpPolicy: max_attempts must be at least 1, got {self.max_attempts}")


class Parked(Exception):
    """The node's provider job runs on without us: its run gives its worker back, a continuation run collects the
    job (recalled through the ledger). Not a VideoPipelineError: nothing failed, and no retry is due."""

    def __init__(self, provider: str, job_id: str, *, shown: str | None = None) -> None:
        # shown: the job as people know it, when the wait is not on a provider job of the node's own.
        self.shown = shown or f"{provider} {job_id}"
        super().__init__(f"waiting on {self.shown}")
        self.provider = provider
        self.job_id = job_id


class _DeadlineReached(Exception):
    """The adapter's deadline passed during a call; `run_job` cancels the job and says so."""


class Abandoned(BaseException):
    """The owner of this background work stopped waiting (head start of an ended run): cancel the job.
    A BaseException so no `except Exception` takes it for an error of the work."""


_stop: ContextVar[threading.Event | None] = ContextVar("video_pipelines_stop", default=None)


def stopping_on(event: threading.Event) -> AbstractContextManager[None]:
    """In this context, every `sleep_interruptibly` raises `Abandoned` once `event` is set."""
    return scoped(_stop, event)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def sleep_interruptibly(seconds: float) -> None:
    """Sleep in short slices (a signal may reach another thread); `Abandoned` once `stopping_on`'s event is set."""
    stop = _stop.get()
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            raise Abandoned
        _sleep(min(_SLEEP_SLICE, remaining))
    if stop is not None and stop.is_set():
        raise Abandoned


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _message_in(body: Any) -> str | None:
    if isinstance(body, str):
        return _text(body)
    if isinstance(body, list):
        parts = [part for part in (_message_in(item) for item in body) if part]
        return "; ".join(parts) or None
    if isinstance(body, dict):
        if isinstance(body.get("msg"), str):  # one pydantic/FastAPI validation error
            location = ".".join(str(part) for part in body.get("loc", ()) if part != "body")
            return f"{location}: {body['msg']}" if location else str(body["msg"])
        error, description = _text(body.get("error")), _text(body.get("error_description"))
        if error and description:  # an OAuth 2.0 token endpoint (RFC 6749)
            return f"{error}: {description}"
        message, status = _text(body.get("message")), _text(body.get("status"))
        if message and status:  # a Google API's google.rpc.Status
            return f"{status}: {message}"
        for key in ("detail", "error", "message"):
            found = _message_in(body.get(key))
            if found:
                return found
    return None


def provider_message(body: bytes, reason: str) -> str:
    """The provider's own explanation of an error answer (`detail` / `error` / `message`), shortened."""
    try:
        message = _message_in(json.loads(body))
    except ValueError:
        message = None
    if not message:
        message = body.decode("utf-8", "replace").strip() or reason or "no details"
    return message if len(message) <= _MESSAGE_LIMIT else message[:_MESSAGE_LIMIT] + "…"


# One file of a multipart/form-data body: (field name, file name, content type, bytes).
UploadedFile = tuple[str, str, str, bytes]


def _encoded(
    payload: Mapping[str, Any] | None, form: Mapping[str, str] | None, upload: UploadedFile | None = None
) -> tuple[bytes | None, str | None]:
    if upload is not None:
        field, filename, content_type, data = upload
        # httpx (a dependency already) writes the multipart body and its boundary; we send the bytes ourselves.
        request = httpx.Request("POST", "http://multipart.invalid/", files={field: (filename, data, content_type)})
        return request.read(), request.headers["content-type"]
    if form is not None:
        return urlencode(dict(form)).encode("ascii"), "application/x-www-form-urlencoded"
    if payload is not None:
        return json.dumps(payload).encode("utf-8"), "application/json"
    return None, None


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    retry_after: str | None
    body: bytes


@dataclass
class ProviderHttp:
    """JSON calls to one provider's API through the SSRF guard, with retries. `authorization` may be a
    callable (an expiring token), `renew` runs once after a 401, `deadline` (monotonic) bounds every call."""

    provider: str
    _: KW_ONLY
    allowed: AllowedHosts
    policy: HttpPolicy
    credential: str  # the variable a 401 or 403 tells to check
    authorization: str | Callable[[], str] | None = field(default=None, repr=False)
    renew: Callable[[], object] | None = None
    secret: str = field(default="", repr=False)
    deadline: float | None = None

    def _redact(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text

    def call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        json: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        upload: UploadedFile | None = None,
    ) -> dict[str, Any]:
        """One JSON (form, multipart) request, retried as it may be; the JSON object answered."""
        content, content_type = _encoded(json, form, upload)
        return self._json(self.send(method, url, what=what, content=content, content_type=content_type), what)

    def send(
        self, method: str, url: str, *, what: str, content: bytes | None = None, content_type: str | None = None
    ) -> bytes:
        """One request with `content` as is, retried as it may be; the answer's body (pre-signed uploads use it)."""
        attempts = self.policy.max_attempts
        attempt, renewed = 1, False
        while True:
            wait: float | None = None
            admission = self._through_circuit()
            try:
                answer = self._send(method, url, content, content_type, what=what, timeout=self._request_timeout())
            except _RETRIED_TRANSPORT_ERRORS as exc:
                circuit_failed(self.provider)
                if (remaining := self._remaining()) is not None and remaining <= 0:
                    raise _DeadlineReached from None
                last = f"{type(exc).__name__} talking to {redact_url(url)}" + (f": {exc}" if str(exc) else "")
            else:
                if httpx.codes.is_success(answer.status):
                    if not admission.clean:
                        circuit_succeeded(self.provider)
                    return answer.body
                if answer.status == 401 and self.renew is not None and not renewed:
                    # A token revoked or expired early: another one, once, without using up an attempt.
                    self.renew()
                    renewed = True
                    continue
                if answer.status >= 500:
                    circuit_failed(self.provider)
                elif answer.status != 429 and not admission.clean:  # a refusal: the provider is up (429: busy)
                    circuit_succeeded(self.provider)
                last, wait = self._refusal(answer, what)
            if attempt >= attempts and not waits_for_circuit(self.provider):
                raise TransientProviderError(
                    self._redact(f"{self.provider}: {what} failed after {attempts} attempts; last: {last}")
                )
            if wait is None:
                wait = backoff_delay(min(attempt, attempts) - 1, base=self.policy.base_delay, cap=self.policy.max_delay)
            self._pause(wait)
            # A failed probe uses up no attempt: the circuit is open again, and the call waits for it.
            attempt += 0 if admission.probe else 1

    def _through_circuit(self) -> Admission:
        """Wait (interruptibly, within the deadline) until the provider's circuit lets a call through: the
        admission that let it (`probe`: the half-open circuit's probe). `ProviderUnavailable` when the node can
        move to a fallback."""
        while not (admission := circuit_admission(self.provider)).allowed:
            if may_skip_open_circuit():
                raise ProviderUnavailable(
                    f"{self.provider}: its circuit is open after transient failures across the deployment "
                    f"(it lets a call through again in {admission.wait:.0f} s); not called"
                )
            self._pause(admission.wait)
        return admission

    def cancel_quietly(self, method: str, url: str, *, json: Mapping[str, Any] | None = None) -> bool:
        """One attempt within `policy.cancel_timeout`, even past the deadline; True when the provider accepted it."""
        content, content_type = _encoded(json, None)
        timeout = self.policy.cancel_timeout
        try:
            answer = self._send(method, url, content, content_type, what="canceling the job", timeout=timeout)
        except Exception:  # best effort: the error that made us cancel is the one worth reporting
            return False
        return httpx.codes.is_success(answer.status)

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _request_timeout(self) -> float:
        remaining = self._remaining()
        if remaining is None:
            return self.policy.request_timeout
        if remaining <= 0:
            raise _DeadlineReached
        return min(self.policy.request_timeout, remaining)

    def _pause(self, seconds: float) -> None:
        remaining = self._remaining()
        if remaining is not None and remaining <= seconds:
            sleep_interruptibly(remaining)
            raise _DeadlineReached
        sleep_interruptibly(seconds)

    def _refusal(self, answer: _Answer, what: str) -> tuple[str, float | None]:
        """What an error answer worth a retry says and how long it asks to wait; raise for the others."""
        message = self._redact(provider_message(answer.body, answer.reason))
        shown = f"HTTP {answer.status} ({message})"
        if answer.status == 429 or answer.status >= 500:
            retry_after = parse_retry_after(answer.retry_after)
            return shown, None if retry_after is None else min(retry_after, self.policy.max_retry_after)
        hint = f" (check {self.credential})" if answer.status in (401, 403) else ""
        raise ProviderHttpError(
            f"{self.provider}: {what} failed: {shown}{hint}", status_code=answer.status, provider_message=message
        )

    def _send(
        self, method: str, url: str, content: bytes | None, content_type: str | None, *, what: str, timeout: float
    ) -> _Answer:
        """One request to the checked address of `url`, in its own span whose `traceparent` it carries;
        transport errors worth a retry are raised as they are."""
        attributes = {"video_pipelines.provider": self.provider, "video_pipelines.call": what}
        with http_client_span(f"{self.provider} {method}", method, redact_url(url), attributes=attributes) as span:
            try:
                destination = resolve_destination(url, self.allowed)
            except TransientFetchError:
                raise
            except FetchError as exc:
                raise ProviderError(f"{self.provider}: {what}: {exc}") from None
            headers = {**_HEADERS, **span.headers}
            if content_type is not None:
                headers["Content-Type"] = content_type
            authorization = self.authorization() if callable(self.authorization) else self.authorization
            if authorization:
                headers["Authorization"] = authorization
            try:
                with open_pinned(
                    destination,
                    method,
                    headers=headers,
                    ssl_context=shared_ssl_context(),
                    timeout=timeout,
                    content=content,
                    total_timeout=timeout,
                ) as response:
                    body = self._read(response, destination)
                    if not response.is_success:
                        report_provider_error(self.provider, response.status_code)
                    answer = _Answer(
                        response.status_code, response.reason_phrase, response.headers.get("retry-after"), body
                    )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                certificate = certificate_error(exc)
                if certificate is not None:
                    raise ProviderError(
                        f"{self.provider}: {what}: TLS certificate of {destination.host} not accepted: "
                        f"{certificate.verify_message or certificate}"
                    ) from None
                if isinstance(exc, _RETRIED_TRANSPORT_ERRORS):
                    raise
                raise ProviderError(
                    self._redact(f"{self.provider}: {what} failed: {type(exc).__name__}: {exc}")
                ) from exc
            span.answered(answer.status)
            return answer

    def _read(self, response: httpx.Response, destination: Destination) -> bytes:
        limit = self.policy.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise ProviderError(
                    f"{self.provider}: the answer of {destination.redacted} is larger than the {limit}-byte limit"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _json(self, body: bytes, what: str) -> dict[str, Any]:
        if not body:
            return {}
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise ProviderError(f"{self.provider}: {what}: the answer is not JSON") from exc
        if not isinstance(parsed, dict):
            raise ProviderError(f"{self.provider}: {what}: expected a JSON object, got {type(parsed).__name__}")
        return parsed


def run_job(
    ledger: JobLedger,
    *,
    create: Callable[[], str],
    check: Callable[[str], T | None],
    cancel: Callable[[str], object],
    provider: str,
    timeout: float | None,
    poll_interval: float,
    deadline: float | None = None,
    timed_out: Callable[[str], str] | None = None,
    parkable: bool = False,
) -> T:
    """Resume the job `ledger` remembers, or create and remember one; poll it every `poll_interval` s to the end
    holding a provider slot, and cancel it if we stop waiting. `deadline`, when the adapter's clock started
    earlier, replaces now + `timeout`. A `parkable` job (one the deployment can check and cancel without this
    run) still running after its first check raises `Parked` where parking is allowed."""
    job_id = ledger.recall()
    with provider_slot(provider, resuming=job_id is not None):
        if job_id is None:
            try:
                job_id = create()
            except _DeadlineReached:
                raise ProviderError(f"{provider}: no job started within the {timeout:g} s timeout") from None
            try:
                ledger.remember(job_id)
            except BaseException:
                # Not remembered, so a retry could not resume it: nobody would collect its result.
                cancel(job_id)
                raise
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        try:
            while True:
                result = check(job_id)
                if result is not None:
                    return result
                if parkable and may_park():
                    raise Parked(provider, job_id)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                sleep_interruptibly(poll_interval if remaining is None else min(poll_interval, remaining))
        except _DeadlineReached:
            pass  # a call the deadline cut short: the job has run out of time like any other
        except (JobFailed, TransientError, Parked):
            raise
        except BaseException:
            cancel(job_id)
            raise
        cancel(job_id)
        if timed_out is not None:
            raise ProviderError(timed_out(job_id))
        raise ProviderError(f"{provider} job {job_id} did not finish within {timeout:g} s; canceled")


# Uploads a local file to the provider's own file store: (path, content type) -> the URL its models read.
Upload = Callable[[Path, str], str]


def remote_input(
    url: str,
    path: Path,
    *,
    provider: str,
    what: str,
    max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
    upload: Upload | None = None,
) -> str:
    """What to send a remote model for a file: an http(s) URL it can reach, else a `data:` URI, else `upload`
    (local URLs, including our own API's artifacts under `dev`, are not reachable)."""
    if reachable_by_provider(url):
        return url
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProviderError(f"{provider}: cannot read the {what} {path}: {exc}") from exc
    mime = mimetypes.guess_type(path.name)[0] or mimetypes.guess_type(urlsplit(url).path)[0]
    if size > max_inline_bytes:
        if upload is not None:
            return upload(path, mime or "application/octet-stream")
        raise ProviderError(
            f"{provider}: the {what} is a local file ({size} bytes), larger than the {max_inline_bytes} bytes "
            "that can be sent inline; a remote model needs an artifact store the provider can read for it: "
            "set VIDEO_PIPELINES_STORAGE_URL to an s3:// store (http URLs)"
        )
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{mime or 'application/octet-stream'};base64,{encoded}"


def reachable_by_provider(url: str) -> bool:
    """Whether a remote provider can fetch `url` itself: http(s), and not a local artifact our own API serves."""
    base = (os.environ.get(ARTIFACTS_BASE_URL_ENV) or "").rstrip("/")
    served_here = bool(base) and url.startswith(base + "/")
    return urlsplit(url).scheme.lower() in ("http", "https") and not served_here
