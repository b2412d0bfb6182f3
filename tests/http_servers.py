"""Real HTTP servers on 127.0.0.1 for tests: one way to start one in a thread and stop it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_in_background(
    handler: type[BaseHTTPRequestHandler], port: int = 0, *, poll_interval: float = 0.5
) -> ThreadingHTTPServer:
    """A threading server on 127.0.0.1:`port` (0: a free one), already serving from a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True).start()
    return server


def shut_down(server: ThreadingHTTPServer) -> None:
    """Stop serving and close the listening socket."""
    server.shutdown()
    server.server_close()
