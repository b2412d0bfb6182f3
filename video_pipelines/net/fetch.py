"""Requests sent to an address `resolve_destination` checked (no DNS rebinding; the certificate is still verified
against the hostname, httpcore's `sni_hostname`): one request (`open_pinned`: no redirects, no proxies, since a
proxy resolves the host itself; httpx bounds each phase only, so `total_timeout` bounds a trickling peer), and
downloads of remote media files to disk, each redirect hop checked again."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from video_pipelines.errors import FetchError, TransientFetchError
from video_pipelines.net.guard import AllowedHosts, Destination, redact_url, resolve_destination

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_SIZE = 1024 * 1024
_HEADERS = {"User-Agent": "video-pipelines", "Accept-Encoding": "identity"}


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind `exc`, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Deadline:
    """Shuts the request's connections down after `seconds`: `shutdown` on a dup of each socket (httpcore's
    `trace` extension) wakes a blocked read or write in the sending thread, also under TLS."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        raw = info["return_value"].get_extra_info("socket")
        if not isinstance(raw, socket.socket):
            return
        duplicate = raw.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.expired:
                _shut(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def open_pinned(
    destination: Destination,
    method: str,
    *,
    headers: Mapping[str, str],
    ssl_context: ssl.SSLContext,
    timeout: float,
    content: bytes | None = None,
    total_timeout: float | None = None,
) -> Iterator[httpx.Response]:
    """Send one request to the first checked address that accepts a connection; yield the streamed response
    (`total_timeout` also covers what the caller reads in the `with` block)."""
    extensions: dict[str, Any] = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
    request_headers = httpx.Headers(headers)
    request_headers["Host"] = destination.host_header
    with contextlib.ExitStack() as stack:
        deadline = None
        if total_timeout is not None:
            deadline = stack.enter_context(_Deadline(total_timeout))
            extensions["trace"] = deadline.trace
        try:
            for index, ip in enumerate(destination.addresses):
                # One client per connection: pooled connections are keyed by IP, and one verified for
                # another hostname must never be reused.
                with httpx.Client(verify=ssl_context, trust_env=False, timeout=timeout) as client:
                    request = client.build_request(
                        method, destination.url_at(ip), headers=request_headers, content=content, extensions=extensions
                    )
                    try:
                        response = client.send(request, stream=True)
                    except httpx.ConnectError as exc:
                        if index + 1 < len(destination.addresses) and certificate_error(exc) is None:
                            continue
                        raise
                    try:
                        yield response
                    finally:
                        response.close()
                    return
        except httpx.HTTPError as exc:
            if deadline is not None and deadline.expired and not isinstance(exc, httpx.TimeoutException):
                raise httpx.TimeoutException(f"no complete answer within {deadline.seconds:g}s") from exc
            raise


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


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per CA setting ($SSL_CERT_FILE, $SSL_CERT_DIR) for every outgoing call of the process: loading
    the CA bundle costs tens of milliseconds of CPU, which a context per call paid again each time."""
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context(_cert_file: str | None, _cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context()  # reads the two variables itself: they are the cache key


def fetch_to_file(
    url: str, dest: Path, *, allowed: AllowedHosts, max_bytes: int = 500 * 1024 * 1024, timeout: float = 30.0
) -> int:
    """Download `url` to `dest` (appearing once complete); the bytes written. Each redirect hop (at most
    three) is checked again; `timeout` bounds connecting and each read, `max_bytes` the whole download."""
    ssl_context = shared_ssl_context()
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        destination = resolve_destination(current, allowed)
        try:
            with open_pinned(
                destination, "GET", headers=_HEADERS, ssl_context=ssl_context, timeout=timeout
            ) as response:
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"{destination.redacted} answered HTTP {response.status_code} without a Location"
                        )
                    current = str(destination.url.join(location))
                    continue
                _check_status(response, destination)
                return _save(response, dest, destination, max_bytes)
        except httpx.HTTPError as exc:
            raise _translate(exc, destination, timeout) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"cannot build a request for {destination.redacted}: {exc}") from exc
    raise FetchError(f"more than {MAX_REDIRECTS} redirects fetching {redact_url(url)}")
