"""One HTTP request sent to an address `resolve_destination` checked: no redirects, no proxies (a proxy
resolves the host itself). httpx bounds each phase only, so `total_timeout` bounds a trickling peer."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from video_pipelines.net.guard import Destination


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
