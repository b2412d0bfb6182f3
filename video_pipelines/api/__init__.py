"""The HTTP API (README "The HTTP API"): FastAPI over the application layer `executions/`.

    from video_pipelines.api import ApiSettings, create_app
    app = create_app(ApiSettings.from_env())   # or: video-pipelines serve --port 8080

- `app` — `create_app`: the FastAPI app; OpenAPI at `/openapi.json`, docs at `/docs`.
- `routes` — the routes, each a few lines over `executions/`.
- `auth` — `Authorization: Bearer <key>` -> `Caller(tenant)`, and the rate limit, as a dependency.
- `problems` — every error mapped once to RFC 9457 `application/problem+json`.
- `events` — server-sent events of an execution, by polling its status and diffing.
- `health` — database, daemon heartbeat and artifact storage checks of `/health`.
- `models` — the request and response shapes (pydantic; the OpenAPI schema).
- `settings` — `ApiSettings` from the environment (body limit, rate limit, polling).
- `rate_limit` — the per-key token buckets (in memory, per process).
- `state` — the store and Dagster instance the app holds while it serves.
- `server` — `serve`: uvicorn, one process.
"""

from __future__ import annotations

from video_pipelines.api.app import create_app
from video_pipelines.api.server import serve
from video_pipelines.api.settings import ApiSettings, RateLimit

__all__ = ["ApiSettings", "RateLimit", "create_app", "serve"]
