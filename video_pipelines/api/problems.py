"""Every error answer of the API, mapped once: RFC 9457 `application/problem+json`, never a traceback or
HTML; a 500's detail never carries the cause (the log does)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from video_pipelines.errors import (
    IDEMPOTENCY_KEY_REUSED,
    ExecutionError,
    ExecutionNotFound,
    IdempotencyKeyReused,
    PlanValidationError,
    SecretKeyError,
    SubmissionStoreError,
    UsageError,
    VideoPipelineError,
    WebhookError,
)
from video_pipelines.plan.problems import PlanProblem, plan_problems

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
ABOUT_BLANK = "about:blank"
INVALID_PLAN = "tag:video-pipelines,2025:invalid-plan"
UNHEALTHY = "tag:video-pipelines,2025:unhealthy"
INTERNAL_ERROR = "the server failed to answer this request; the error is in its log"


class ApiProblem(Exception):
    """An answer that is a problem: raise it from a route or a dependency, or answer it (`response`)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = ABOUT_BLANK,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type_
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def response(self, request: Request) -> JSONResponse:
        """The problem document of this answer; `instance` is the request's path."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title or HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            "instance": request.url.path,
            **self.extensions,
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers, media_type=PROBLEM_JSON)


def _api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return exc.response(request)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers: no route (404), wrong method (405), and HTTPExceptions of dependencies."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    detail = str(exc.detail)
    if status == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"there is no {request.url.path} here; the API is described at /docs"
    elif status == 405 and detail == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
        allowed = headers.get("Allow") or headers.get("allow")
        detail = f"{request.method} is not allowed on {request.url.path}" + (f"; use {allowed}" if allowed else "")
    return ApiProblem(status, detail, headers=headers).response(request)


def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A query parameter or header FastAPI could not read: 400, naming each one."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return ApiProblem(400, "; ".join(parts) or "the request is not valid").response(request)


def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
    """422, an invalid plan or a reused Idempotency-Key: each lists its `errors` as `{"node", "field", "message"}`."""
    if isinstance(exc, IdempotencyKeyReused):
        title, type_ = "Idempotency-Key is already used", IDEMPOTENCY_KEY_REUSED
        errors = [PlanProblem(None, "Idempotency-Key", str(exc))]
    else:
        assert isinstance(exc, PlanValidationError)
        title, type_, errors = "Invalid plan", INVALID_PLAN, plan_problems(exc)
    extensions = {"errors": [problem.to_wire() for problem in errors]}
    return ApiProblem(422, str(exc), title=title, type_=type_, extensions=extensions).response(request)


def _answer(status: int) -> Callable[[Request, Exception], JSONResponse]:
    """The handler that answers an error with `status` and the error's message as the detail."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        return ApiProblem(status, str(exc)).response(request)

    return handler


def _failed(request: Request, exc: Exception) -> JSONResponse:
    # A VideoPipelineError handled here is not re-raised: log it, since the answer never carries it. Any other
    # exception Starlette's ServerErrorMiddleware answers with this, then re-raises: the server logs the traceback.
    if isinstance(exc, VideoPipelineError):
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    return ApiProblem(500, INTERNAL_ERROR).response(request)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error to its problem answer (see the module docstring); the most specific class wins."""
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(PlanValidationError, _unprocessable)
    app.add_exception_handler(IdempotencyKeyReused, _unprocessable)
    app.add_exception_handler(ExecutionNotFound, _answer(404))
    app.add_exception_handler(UsageError, _answer(400))
    app.add_exception_handler(SubmissionStoreError, _answer(400))
    app.add_exception_handler(SecretKeyError, _failed)
    app.add_exception_handler(ExecutionError, _answer(409))
    app.add_exception_handler(WebhookError, _answer(409))
    app.add_exception_handler(VideoPipelineError, _failed)
    app.add_exception_handler(Exception, _failed)
