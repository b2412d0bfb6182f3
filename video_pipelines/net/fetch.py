"""Download a remote media file to disk, each hop checked and sent to the checked IP (no DNS rebinding);
the certificate is still verified against the hostname (httpcore's `sni_hostname`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from video_pipelines.errors import FetchError, TransientFetchError
from video_pipelines.net.guard import AllowedHosts, Destination, redact_url, resolve_destination
from video_pipelines.net.pinned import certificate_error, open_pinned

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_SIZE = 1024 * 1024
_HEADERS = {"User-Agent": "video-pipelines", "Accept-Encoding": "identity"}


def _translate(exc: httpx.HTTPError, destination: Destination, timeout: float) -> FetchError:
    shown = destination.redacted
    if isinstance(exc, httpx.TimeoutException):
        return TransientFetchError(f"timed out ({timeout:g}s) fetching {shown}: {type(exc).__name__}")
    certificate = certificate_error(exc)
    if certificate is not None:
        return FetchError(
            f"TLS certificate of {destination.host} not accepted fetching {shown}: "
            f"{certificate.verify_message or certificate}"
        )
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return TransientFetchError(f"{type(exc).__name__} fetching {shown}: {exc}")
    return FetchError(f"{type(exc).__name__} fetching {shown}: {exc}")


def _check_status(response: httpx.Response, destination: Destination) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    shown = destination.redacted
    if status == 429 or status >= 500:
        raise TransientFetchError(f"{shown} answered HTTP {status} {response.reason_phrase}; worth a retry")
    if 400 <= status < 500:
        raise FetchError(f"{shown} answered HTTP {status} {response.reason_phrase}")
    raise FetchError(f"unexpected HTTP {status} from {shown}")


def _redirect_target(response: httpx.Response, destination: Destination) -> str:
    location = response.headers.get("location")
    if not location:
        raise FetchError(f"{destination.redacted} answered HTTP {response.status_code} without a Location")
    return str(destination.url.join(location))


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A file that becomes `dest` only once the block completes: a failure leaves no partial file."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            yield out
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _save(response: httpx.Response, dest: Path, destination: Destination, max_bytes: int) -> int:
    too_big = f"{destination.redacted} is larger than the {max_bytes}-byte limit"
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"{too_big} (Content-Length {length})")
    written = 0
    try:
        with atomic_file(dest) as out:
            for chunk in response.iter_bytes(_CHUNK_SIZE):
                written += len(chunk)
                if written > max_bytes:
                    raise FetchError(too_big)
                out.write(chunk)
    except OSError as exc:
        raise FetchError(f"cannot write {dest} while fetching {destination.redacted}: {exc}") from exc
    return written


def fetch_to_file(
    url: str, dest: Path, *, allowed: AllowedHosts, max_bytes: int = 500 * 1024 * 1024, timeout: float = 30.0
) -> int:
    """Download `url` to `dest` (appearing once complete); the bytes written. Each redirect hop (at most
    three) is checked again; `timeout` bounds connecting and each read, `max_bytes` the whole download."""
    ssl_context = httpx.create_ssl_context()
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        destination = resolve_destination(current, allowed)
        try:
            with open_pinned(
                destination, "GET", headers=_HEADERS, ssl_context=ssl_context, timeout=timeout
            ) as response:
                if response.status_code in REDIRECT_STATUSES:
                    current = _redirect_target(response, destination)
                    continue
                _check_status(response, destination)
                return _save(response, dest, destination, max_bytes)
        except httpx.HTTPError as exc:
            raise _translate(exc, destination, timeout) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"cannot build a request for {destination.redacted}: {exc}") from exc
    raise FetchError(f"more than {MAX_REDIRECTS} redirects fetching {redact_url(url)}")
