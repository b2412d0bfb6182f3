"""The HTTP API: FastAPI over `executions/` (`create_app(ApiSettings.from_env())`, or `video-pipelines serve`)."""

from __future__ import annotations

from video_pipelines.api.app import create_app, serve
from video_pipelines.api.settings import ApiSettings, RateLimit

__all__ = ["ApiSettings", "RateLimit", "create_app", "serve"]
