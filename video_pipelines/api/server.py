"""`video-pipelines serve`: the API in one uvicorn process."""

from __future__ import annotations

import sys

import uvicorn

from video_pipelines.api.app import create_app
from video_pipelines.api.settings import ApiSettings

# Seconds open streams (/events) get to end when the server stops, before they are cut.
GRACEFUL_SHUTDOWN_SECONDS = 5


def serve(settings: ApiSettings) -> int:
    """Serve the API on `settings.host:settings.port` until interrupted; returns the exit code."""
    app = create_app(settings)
    print(f"video-pipelines API on {settings.url} (docs at {settings.url}/docs)", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn leaves `started` False when it could not start (a taken port, a failed start-up).
    return 0 if server.started else 1
