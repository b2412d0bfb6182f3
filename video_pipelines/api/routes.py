"""The routes of the HTTP API, each a few lines over `executions/`. Every `/api/...` route needs a key and
sees only its tenant's executions (another tenant's is 404, as a missing one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse

from video_pipelines import executions
from video_pipelines.api.events import execution_events, stream_schema
from video_pipelines.api.health import check_daemon, check_database, check_storage, run_checks
from video_pipelines.api.models import (
    Delivery,
    DeliveryLog,
    ExecutionAccepted,
    ExecutionPage,
    Health,
    InvalidPlan,
    Problem,
    StatusDocument,
    Unhealthy,
)
from video_pipelines.api.problems import UNHEALTHY, ApiProblem
from video_pipelines.api.state import ApiState, CallerDep, StateDep
from video_pipelines.executions import Caller, ExecutionStatus
from video_pipelines.executions.destinations import check_destinations
from video_pipelines.executions.metrics import CONTENT_TYPE_LATEST, render_metrics
from video_pipelines.executions.tenancy import MAX_PAGE
from video_pipelines.plan.document import PlanDocument
from video_pipelines.plan.limits import loads_bounded
from video_pipelines.submissions.store import MAX_IDEMPOTENCY_KEY_LENGTH
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import DeliveryOutbox

T = TypeVar("T")

REF_TEMPLATE = "#/components/schemas/{model}"
# The body of POST /api/execute in the OpenAPI document (the route reads it itself, see `submit`).
PLAN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=PlanDocument.__name__)}}},
    },
}
_PROBLEMS: dict[int, tuple[type[Problem], str]] = {
    400: (Problem, "The request is malformed (not JSON, a bad parameter or header)."),
    401: (Problem, "No API key, or a key that is unknown or revoked."),
    404: (Problem, "No such execution (or not one of this key's tenant: the same answer)."),
    409: (Problem, "The execution cannot be used as asked (e.g. a retry of one that is not failed or canceled)."),
    413: (Problem, "The body is larger than the server's limit."),
    422: (
        InvalidPlan,
        "The plan is invalid, or the Idempotency-Key was used before for another request; nothing was stored.",
    ),
    429: (Problem, "Too many requests for this key; see Retry-After."),
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of these error answers, with the 401 and 429 every key call may get."""
    wanted = sorted({*codes, 401, 429})
    return {code: {"model": _PROBLEMS[code][0], "description": _PROBLEMS[code][1]} for code in wanted}


router = APIRouter()


def refuse_nul(request: Request) -> None:
    """400 for a NUL character (`%00`) in the path or a query parameter: no id or cursor holds one, and
    PostgreSQL's text cannot, so it must never reach a query. (HTTP parsers refuse NUL in headers themselves.)"""
    if "\x00" in request.scope["path"]:
        raise ApiProblem(400, "the path holds a NUL character (%00), which no execution or webhook id does")
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise ApiProblem(400, f"the query parameter {name!r} holds a NUL character (%00), which no value does")


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, f"the body is larger than {limit} bytes, the limit of this server")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as its declared or received size passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiProblem(400, f"Content-Length must be a number of bytes, got {declared!r}")
        if int(declared) > limit:
            raise too_large(limit)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise too_large(limit)
    return bytes(received)


def decode_json(body: bytes) -> Any:
    """The JSON document of a body; 400 when it is not one, or nests too deep or has too long a number (`limits`)."""
    try:
        return loads_bounded(body)
    except json.JSONDecodeError as exc:
        raise ApiProblem(
            400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise ApiProblem(400, "the body is not valid JSON: it is not UTF-8 text") from None


def admit_and_submit(
    state: ApiState, caller: Caller, body: bytes, idempotency_key: str | None, traceparent: str | None
) -> str:
    """Decode (400), validate (422), check the literal destinations, store; in a worker thread, as decoding a
    body up to the limit takes CPU time that must not hold the event loop."""
    admission = executions.admit(decode_json(body))
    check_destinations(admission.plan, state.settings.allowed_hosts)
    return executions.submit(
        admission,
        state.store,
        idempotency_key=idempotency_key,
        caller=caller,
        trace_parent=traceparent,
        records=state.records,
    )


@router.post(
    "/api/execute",
    status_code=202,
    response_model=ExecutionAccepted,
    tags=["executions"],
    summary="Submit a plan",
    openapi_extra=PLAN_BODY,
    responses=problems(400, 413, 422),
)
async def submit(
    request: Request,
    caller: CallerDep,
    state: StateDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="the same key (per tenant) returns the same executionId and never starts a second run",
            # The store checks the key (its own 400 message); the schema says the same to clients.
            json_schema_extra={"minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH, "pattern": r"\S"},
        ),
    ] = None,
    traceparent: Annotated[
        str | None, Header(description="W3C trace context: the execution's trace continues the caller's")
    ] = None,
) -> ExecutionAccepted:
    """Store a plan for the daemon to run; answers at once with its execution id.

    The body is the plan of `video-pipelines submit` (README "Running plans") with its optional
    `baseExecutionId` (one of this tenant's executions), `webhook {url, secret, events}`
    and `priority`. A webhook or media URL whose host is a private, loopback, link-local or
    metadata IP address is refused here unless `VIDEO_PIPELINES_ALLOWED_HOSTS` allows it.
    """
    body = await read_body(request, state.settings.max_body_bytes)
    execution_id = await run_in_threadpool(admit_and_submit, state, caller, body, idempotency_key, traceparent)
    return ExecutionAccepted(execution_id=execution_id)


def _status_route(action: str, summary: str, *errors: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """The route of a call answered with the status document: `GET .../status`, `POST .../cancel` or `.../retry`."""
    method, code = (router.get, 200) if action == "status" else (router.post, 202)
    return method(
        f"/api/execute/{{execution_id}}/{action}",
        status_code=code,
        response_model=StatusDocument,
        tags=["executions"],
        summary=summary,
        responses=problems(*errors),
    )


@_status_route("status", "The status of an execution", 404)
def status(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """The status document of `video-pipelines status`, node by node."""
    return StatusDocument.of(executions.status_for(caller, state.records, state.store, execution_id))


@_status_route("cancel", "Cancel an execution", 404)
def cancel(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """Cancel an execution; answers with the status document, which is the truth.

    `canceled`: it was still pending, and nothing of it will ever run. Otherwise its run was asked
    for already: it runs nothing more, and the answer is its real state (`pending` or `processing`
    until its run ends canceled; `completed` when every node already had its video).
    """
    return StatusDocument.of(executions.cancel_for(caller, state.records, state.store, execution_id))


@_status_route("retry", "Retry a failed or canceled execution", 404, 409)
def retry(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """Run a failed or canceled execution again: completed nodes are reused, only the rest run.

    Answers with the status document (pending until the new run starts). Retrying twice before
    it starts is retrying once; 409 for an execution that is not failed or canceled.
    """
    return StatusDocument.of(executions.retry_for(caller, state.records, state.store, execution_id))


@router.get(
    "/api/execute/{execution_id}/events",
    # Not EventSourceResponse: FastAPI would then expect this route to be a generator of events.
    response_class=Response,
    tags=["executions"],
    summary="Follow an execution (server-sent events)",
    responses={
        200: {
            "description": "`status` (the current state, first), then `node` and `execution` events; "
            "the stream ends after the terminal status. A `: keep-alive` comment line comes when nothing "
            "happened for a while.",
            "content": {"text/event-stream": {"itemSchema": stream_schema(REF_TEMPLATE)}},
        },
        **problems(404),
    },
)
async def events(execution_id: str, request: Request, caller: CallerDep, state: StateDep) -> EventSourceResponse:
    """The execution's changes as server-sent events (see `api.events`); a late client first gets the current state."""
    first = await run_in_threadpool(executions.status_for, caller, state.records, state.store, execution_id)

    async def read_status() -> ExecutionStatus:
        return await anyio.to_thread.run_sync(executions.execution_status, state.records, state.store, execution_id)

    stream = execution_events(
        first,
        read_status,
        poll_seconds=state.settings.events_poll_seconds,
        keepalive_seconds=state.settings.events_keepalive_seconds,
        disconnected=request.is_disconnected,
    )
    # No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering): events go out as they happen.
    return EventSourceResponse(stream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get(
    "/api/executions",
    response_model=ExecutionPage,
    tags=["executions"],
    summary="The caller's executions, newest first",
    responses=problems(400),
)
def list_executions(
    caller: CallerDep,
    state: StateDep,
    status: Annotated[ExecutionState | None, Query(description="only executions in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(description="the nextCursor of the previous page")] = None,
) -> ExecutionPage:
    """One page of this key's tenant's executions, and the cursor of the next page (null after the last)."""
    page, next_cursor = executions.list_executions(
        caller,
        state.records,
        state.store,
        status=status.value if status is not None else None,
        limit=limit,
        cursor=cursor,
    )
    return ExecutionPage(executions=[StatusDocument.of(found) for found in page], next_cursor=next_cursor)


@router.get(
    "/api/execute/{execution_id}/deliveries",
    response_model=DeliveryLog,
    tags=["webhooks"],
    summary="Every webhook attempt of an execution",
    responses=problems(404),
)
def deliveries(execution_id: str, caller: CallerDep, state: StateDep) -> DeliveryLog:
    """Every webhook delivery of the execution and every attempt: time, status code or error."""
    executions.require_visible(caller, state.records, state.store, execution_id)
    report = executions.delivery_report(state.store, execution_id)
    return DeliveryLog(deliveries=[Delivery.model_validate(record) for record in report])


@router.post(
    "/api/execute/{execution_id}/deliveries/{webhook_id}/redeliver",
    status_code=202,
    response_model=Delivery,
    tags=["webhooks"],
    summary="Send a webhook event again",
    responses=problems(404),
)
def redeliver(execution_id: str, webhook_id: str, caller: CallerDep, state: StateDep) -> Delivery:
    """Send the event again with the same `webhook-id`, as a new attempt; answers with the delivery, due now."""
    executions.require_visible(caller, state.records, state.store, execution_id)
    delivery = executions.redeliver(state.store, execution_id, webhook_id)
    return Delivery.model_validate(executions.delivery_record(DeliveryOutbox(state.store), delivery))


@router.get(
    "/health",
    response_model=Health,
    tags=["operations"],
    summary="Database, daemon and storage",
    responses={503: {"model": Unhealthy, "description": "Something is down: `down`, and why in `detail`."}},
)
async def health(request: Request, state: StateDep) -> Health | JSONResponse:
    """200 when the database, the daemon's heartbeat and artifact storage are all ok; else 503 naming what is down."""
    settings = state.settings
    results = await run_checks(
        {
            "database": lambda: check_database(state.store),
            "daemon": lambda: check_daemon(state.instance, settings.daemon_max_age_seconds),
            "storage": lambda: check_storage(state.artifacts),
        },
        settings.health_timeout_seconds,
    )
    body = {result.name: result.state for result in results}
    down = [result for result in results if result.problem is not None]
    if not down:
        return Health.model_validate(body)
    detail = "; ".join(f"{result.name} is down: {result.problem}" for result in down)
    return ApiProblem(503, detail, type_=UNHEALTHY, extensions=body).response(request)


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(state: StateDep) -> Response:
    """The Prometheus text format, computed from the database and the Dagster instance at scrape time."""
    return Response(render_metrics(state.store, state.records), media_type=CONTENT_TYPE_LATEST)
