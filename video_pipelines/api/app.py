"""`create_app`: the FastAPI application of `video-pipelines serve`, and `serve`: it in one uvicorn process."""

from __future__ import annotations

import importlib.resources
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import fastapi_offline
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from video_pipelines.api.artifacts import router as artifacts
from video_pipelines.api.models import BulkRetryRequest, LogPage, NodeEvent
from video_pipelines.api.problems import PROBLEM_JSON, install_problem_handlers
from video_pipelines.api.providers import router as provider_callbacks
from video_pipelines.api.routes import REF_TEMPLATE, open_state, refuse_nul, router
from video_pipelines.api.settings import ApiSettings
from video_pipelines.api.views import router as views
from video_pipelines.net import js_json_bytes
from video_pipelines.plan.document import PlanDocument, WebhookDocument
from video_pipelines.plan.limits import max_nodes
from video_pipelines.telemetry.tracing import tracing

DESCRIPTION = """\
Submit AI-video execution plans, follow them and receive their signed webhooks.

Every `/api/...` call needs `Authorization: Bearer <api key>` (made with
`video-pipelines api-keys create --name NAME [--tenant T]`); a key sees only its tenant's
executions. An operator's key (`api-keys create --name NAME --operator`) sees every tenant's, and the
run workers and queue. Errors are RFC 9457 `application/problem+json`.

The videos and their thumbnails are served read-only at `/artifacts/videos/<sha256[:2]>/<sha256>.mp4` and
`/artifacts/thumbnails/<sha256[:2]>/<sha256>.jpg`, without a key: the SHA-256 in a result's URL is what lets
one open it. From S3 storage they answer 307 with a fresh presigned URL. Each download of a video here is
recorded, which is what `GET /api/costs/suggestions` reads to tell videos nobody fetched.
"""


# Seconds open streams (/events) get to end when the server stops, before they are cut.
GRACEFUL_SHUTDOWN_SECONDS = 5
_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"
# Request and response headers whose values a span never shows, whatever an operator asks to capture
# (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*): API keys, cookies, signatures. Patterns, case-insensitive.
_REDACTED_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", ".*secret.*", ".*signature.*")


def _version() -> str:
    try:
        return version("video-pipelines")
    except PackageNotFoundError:
        return "0"


class _Api(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the schemas routes name but FastAPI does not see (the plan, which the submit
        route reads itself, and the events of the stream), and problem+json errors."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        document = get_openapi(title=self.title, version=self.version, description=self.description, routes=self.routes)
        _, extra = models_json_schema(
            [
                (PlanDocument, "validation"),
                (BulkRetryRequest, "validation"),
                (NodeEvent, "serialization"),
                (LogPage, "serialization"),
            ],
            ref_template=REF_TEMPLATE,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in extra.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        # The deployment's node limit (VIDEO_PIPELINES_MAX_NODES), as the server reads it.
        schemas[PlanDocument.__name__]["properties"]["jobs"]["maxItems"] = max_nodes()
        # `secretEnv` names a variable of the deployment: over the API only an operator's key may (admission refuses
        # a tenant's), so the tenants' contract leaves it out.
        webhook = schemas[WebhookDocument.__name__]
        webhook["properties"].pop("secretEnv")
        webhook.pop("not")
        for operation in (op for path in document["paths"].values() for op in path.values()):
            responses = operation.get("responses", {})
            # FastAPI's own 422 for a bad parameter: here a bad parameter is a 400 problem.
            if _VALIDATION_ERROR in json.dumps(responses.get("422", {})):
                del responses["422"]
            for code, answer in responses.items():
                content = answer.get("content", {})
                if code.isdigit() and int(code) >= 400 and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        self.openapi_schema = document
        return document


class JavaScriptJSONResponse(JSONResponse):
    """JSON as JavaScript writes it (`net.javascript`): the form the webhooks have, and what an SDK re-serializes."""

    def render(self, content: Any) -> bytes:
        return js_json_bytes(content)


def _trace_requests(app: FastAPI) -> None:
    """A SERVER span per request when tracing is on; never the values of `_REDACTED_HEADERS`."""
    current = tracing()
    if not current.enabled:
        return
    # Imported only when tracing is on, like the SDK (see telemetry.tracing).
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.util.http import OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS, get_custom_headers

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=current.provider,
        # The ASGI receive/send spans of each message: noise around a long-lived event stream.
        exclude_spans=["receive", "send"],
        http_capture_headers_sanitize_fields=[
            *_REDACTED_HEADERS,
            *get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS),
        ],
    )


# Swagger UI's and ReDoc's scripts, styles and icon as the `fastapi-offline` wheel ships them: the docs pages load
# nothing from a CDN, so they work on a machine without internet.
DOCS_ASSETS_URL = "/docs-assets"
_DOCS_ASSETS = importlib.resources.files(fastapi_offline) / "static"


def _serve_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, FastAPI's pages with every asset served by the API itself."""
    assert app.openapi_url is not None and app.swagger_ui_oauth2_redirect_url is not None
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(_DOCS_ASSETS)), name="docs-assets")
    icon = f"{DOCS_ASSETS_URL}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=icon,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=icon,
            with_google_fonts=False,
        )


def create_app(settings: ApiSettings) -> FastAPI:
    """The API over the environment's deployment: its store and Dagster instance are opened at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_state(settings) as state:
            app.state.api = state
            yield

    app = _Api(
        title="video-pipelines",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul)],
        # operationId is the route's name (submit, status, events, ...): the method names of a generated client.
        generate_unique_id_function=lambda route: route.name,
        default_response_class=JavaScriptJSONResponse,
        docs_url=None,  # _serve_docs: the pages without a CDN
        redoc_url=None,
    )
    _serve_docs(app)
    install_problem_handlers(app)
    app.include_router(router)
    app.include_router(views)
    app.include_router(provider_callbacks)
    app.include_router(artifacts)
    _trace_requests(app)
    return app


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
