"""A real HTTP webhook receiver on 127.0.0.1 that records every request and answers from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .http_servers import serve_in_background, shut_down


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass
class WebhookReceiver:
    """Records POSTs; `script[path]` lists the status codes to answer first (then 200)."""

    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(
                        ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )
                    codes = receiver.script.get(self.path)
                    code = codes.pop(0) if codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = serve_in_background(Handler, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server)
            self._server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while len(self.received(path)) < count:
            assert time.monotonic() < deadline, f"{path}: {len(self.received(path))} of {count} requests arrived"
            time.sleep(0.1)
        return self.received(path)


def running_receiver() -> Iterator[WebhookReceiver]:
    """A started receiver, stopped afterwards: the body of the `receiver` fixtures."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
