"""The HTTP API's routes over `executions/`, and what they need: the app's state, keys, event stream, health checks.
Every `/api/...` route needs a key and sees only its tenant's executions (another tenant's is 404, as a missing one)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, cast

import anyio
import dagster as dg
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel

from video_pipelines import executions
from video_pipelines.api.health import check_daemon, check_database, check_storage, open_circuits, run_checks
from video_pipelines.api.models import (
    DateTime,
    Delivery,
    DeliveryLog,
    ExecutionAccepted,
    ExecutionPage,
    Health,
    InvalidPlan,
    NodeEvent,
    Problem,
    StatusDocument,
    Unhealthy,
)
from video_pipelines.api.problems import UNHEALTHY, ApiProblem
from video_pipelines.api.settings import ApiSettings, TokenBuckets
from video_pipelines.deployment.connection import open_deployment
from video_pipelines.executions import Caller, ExecutionStatus
from video_pipelines.executions.metrics import CONTENT_TYPE_LATEST, render_metrics
from video_pipelines.executions.tenancy import MAX_PAGE
from video_pipelines.net import js_json
from video_pipelines.orchestration.resources.artifacts import ArtifactStorage
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan.document import PlanDocument
from video_pipelines.plan.limits import loads_bounded
from video_pipelines.storage import ArtifactStore
from video_pipelines.submissions import ApiKeys, SubmissionStore
from video_pipelines.submissions.fetches import FetchWindow
from video_pipelines.submissions.store import MAX_IDEMPOTENCY_KEY_LENGTH
from video_pipelines.vocabulary import ExecutionState
from video_pipelines.webhooks import DeliveryOutbox

log = logging.getLogger(__name__)

T = TypeVar("T")


# What the app holds while it serves, and who calls, as dependencies: one submission store and one Dagster
# instance, opened at start-up (the store pools its connections; a DagsterInstance serves many threads), and
# `Authorization: Bearer <api key>` -> the key's tenant, then its rate limit. The key is never logged or echoed.
@dataclass
class ApiState:
    """The deployment the API serves, and its per-process state (the rate limit's buckets)."""

    settings: ApiSettings
    store: SubmissionStore
    instance: dg.DagsterInstance
    limiter: TokenBuckets | None
    keys: ApiKeys = field(init=False)
    records: DagsterRunRecords = field(init=False)
    # Which requests for a video are new fetches to record (`/artifacts`): this process's memory.
    fetch_window: FetchWindow = field(default_factory=FetchWindow, init=False)
    _artifacts: ArtifactStore | None = field(default=None, init=False, repr=False)
    _artifacts_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = ApiKeys(self.store)
        self.records = DagsterRunRecords(self.instance)

    def artifacts(self) -> ArtifactStore:
        """The deployment's artifact storage, made on first use: a bad storage URL makes `/health` down, not the API."""
        with self._artifacts_lock:
            if self._artifacts is None:
                self._artifacts = ArtifactStorage().store()
            return self._artifacts


@contextmanager
def open_state(settings: ApiSettings) -> Iterator[ApiState]:
    """Open the environment's deployment (as every door does: DAGSTER_HOME, the database URL) for serving."""
    with open_deployment() as (instance, store):
        limiter = TokenBuckets(settings.rate_limit) if settings.rate_limit is not None else None
        yield ApiState(settings, store, instance, limiter)


def api_state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.api)


StateDep = Annotated[ApiState, Depends(api_state)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key made with `video-pipelines api-keys create --name NAME [--tenant T | --operator]`.",
)
MISSING_KEY = (
    "this call needs an API key: send Authorization: Bearer <key> "
    "(keys are made with `video-pipelines api-keys create --name NAME`)"
)
BAD_KEY = "the API key is not valid (unknown or revoked)"


def authenticated(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller of an `/api/...` request: its key's tenant (raises the 401 or 429 problem)."""
    if credentials is None or not credentials.credentials:
        raise ApiProblem(401, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
    key = state.keys.authenticate(credentials.credentials)
    if key is None:
        raise ApiProblem(401, BAD_KEY, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if state.limiter is not None:
        wait = state.limiter.take(key.key_id)
        if wait is not None:
            limit = state.limiter.limit
            raise ApiProblem(
                429,
                f"this API key made more than {limit.requests} requests in {limit.period_seconds:g} s; "
                f"try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
    return Caller(None) if key.operator else Caller(key.tenant)


CallerDep = Annotated[Caller, Depends(authenticated)]


REF_TEMPLATE = "#/components/schemas/{model}"
# The body of POST /api/execute in the OpenAPI document (the route reads it itself, see `submit`).
PLAN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=PlanDocument.__name__)}}},
    },
}
# An execution id as a page cursor: printable text (a NUL or another control character is no id: 400).
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")

_PROBLEMS: dict[int, tuple[type[Problem], str]] = {
    400: (Problem, "The request is malformed (not JSON, a bad parameter or header)."),
    401: (Problem, "No API key, or a key that is unknown or revoked."),
    403: (Problem, "This call needs an operator's key (`api-keys create --operator`); this key is a tenant's."),
    404: (Problem, "No such execution (or not one of this key's tenant: the same answer)."),
    409: (Problem, "The execution cannot be used as asked (e.g. a retry of one that is not failed or canceled)."),
    413: (Problem, "The body is larger than the server's limit."),
    422: (
        InvalidPlan,
        "The plan is invalid, or the Idempotency-Key was used before for another request; nothing was stored.",
    ),
    429: (Problem, "Too many requests for this key; see Retry-After."),
    503: (Problem, "A service the call needs (the broker) did not answer in time."),
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
    """Decode (400), admit as every door does (422), store; in a worker thread, as decoding a body up to the limit
    takes CPU time that must not hold the event loop."""
    admission = executions.admit(
        decode_json(body), state.records, state.store, tenant=caller.tenant, allowed=state.settings.allowed_hosts
    )
    return executions.submit(
        admission, state.store, idempotency_key=idempotency_key, caller=caller, trace_parent=traceparent
    )


@router.post(
    "/api/execute",
    status_code=202,
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

    The body is the plan of `video-pipelines submit` (docs/plans-and-operations.md) with its optional
    `baseExecutionId` (one of this tenant's executions), `webhook {url, secret, events}`
    and `priority`. A webhook or media URL whose host is a private, loopback, link-local or
    metadata IP address is refused here unless `VIDEO_PIPELINES_ALLOWED_HOSTS` allows it; so is a base
    that does not exist or failed, was canceled or rejected (one still pending or running is waited for).
    `video-pipelines validate` and `submit` give the same answer to the same plan.
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
        tags=["executions"],
        summary=summary,
        responses=problems(*errors),
    )


@_status_route("status", "The status of an execution", 404)
def status(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """The status document of `video-pipelines status`, node by node."""
    return StatusDocument.of(executions.status_for(caller, state.records, state.store, execution_id))


@_status_route("cancel", "Cancel an execution", 404, 409)
def cancel(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """Cancel an execution; answers with the status document, which is the truth.

    `canceled`: it was still pending, and nothing of it will ever run (canceling it again answers
    the same). Otherwise its run was asked for already: it runs nothing more, and the answer is its
    real state (`pending` or `processing` until its run ends canceled; `completed` when every node
    had its video as the cancel came). 409 naming its status for an execution already completed or failed.
    """
    return StatusDocument.of(executions.cancel_for(caller, state.records, state.store, execution_id))


@_status_route("retry", "Retry a failed or canceled execution", 404, 409)
def retry(execution_id: str, caller: CallerDep, state: StateDep) -> StatusDocument:
    """Run a failed or canceled execution again: completed nodes are reused, only the rest run.

    Answers with the status document (pending until the new run starts). Retrying twice before
    it starts is retrying once; 409 for an execution that is not failed or canceled.
    """
    return StatusDocument.of(executions.retry_for(caller, state.records, state.store, execution_id))


# `GET /api/execute/{id}/events`: server-sent events made by polling the status and diffing readings, so
# they show what the status document shows. A failed reading ends the stream: EventSource reconnects.
EventKind = Literal["status", "node", "execution"]
KEEPALIVE = b": keep-alive\n\n"
# What each kind of event carries as its `data`, as the OpenAPI document says.
PAYLOADS: dict[EventKind, tuple[type[BaseModel], str]] = {
    "status": (StatusDocument, "the status document as it is when the client connects (always first)"),
    "node": (NodeEvent, "a node's state changed"),
    "execution": (StatusDocument, "the execution's status changed; the stream ends after a terminal one"),
}


EVENT_IDS = "1, 2, ... in the order the events are sent"


def sse_item(kind: str, description: str, data: dict[str, Any], *, ids: str | None = EVENT_IDS) -> dict[str, Any]:
    """One kind of server-sent event in OpenAPI 3.2's `itemSchema` form: its name, its `id` (what `ids` says; none
    when None) and its `data` (JSON text, `data` adding to its schema)."""
    properties: dict[str, Any] = {"event": {"const": kind}}
    if ids is not None:
        properties["id"] = {"type": "string", "description": ids}
    properties["data"] = {"type": "string", "contentMediaType": "application/json", **data}
    required = ["event", "data"] if ids is None else ["event", "id", "data"]
    return {
        "type": "object",
        "title": f"{kind} event",
        "description": description,
        "required": required,
        "properties": properties,
    }


def stream_schema(ref_template: str) -> dict[str, Any]:
    """The events of the stream, one schema per kind, in OpenAPI 3.2's `itemSchema` form for server-sent
    events (as FastAPI writes its own streams): `data` is JSON text whose schema is the payload's model."""
    return {
        "oneOf": [
            sse_item(kind, description, {"contentSchema": {"$ref": ref_template.format(model=model.__name__)}})
            for kind, (model, description) in PAYLOADS.items()
        ]
    }


@dataclass(frozen=True)
class StatusEvent:
    """One event of the stream: its kind and its JSON data."""

    kind: EventKind
    data: dict[str, Any]

    def encode(self, event_id: int) -> bytes:
        # The form of the status document's GET and of the webhooks: JSON as JavaScript writes it.
        return format_sse_event(data_str=js_json(self.data), event=self.kind, id=str(event_id))

    @property
    def is_terminal(self) -> bool:
        """Whether this event carries the execution's terminal status (the stream ends after it)."""
        return self.kind != "node" and self.data["status"] in {"completed", "failed", "canceled"}


def status_changes(before: ExecutionStatus, after: ExecutionStatus) -> list[StatusEvent]:
    """The events between two readings of one execution: node changes in plan order, then its own."""
    events: list[StatusEvent] = []
    for node_id, node in after.nodes.items():
        earlier = before.nodes.get(node_id)
        if earlier is not None and earlier.state is node.state:
            continue
        events.append(
            StatusEvent(
                "node",
                {
                    "executionId": after.execution_id,
                    "nodeId": node_id,
                    "status": node.state.value,
                    "previousStatus": earlier.state.value if earlier is not None else None,
                    "result": node.result.to_wire() if node.result is not None else None,
                    "reusedFrom": node.reused_from,
                },
            )
        )
    if after.state is not before.state:
        events.append(StatusEvent("execution", after.to_wire()))
    return events


async def execution_events(
    first: ExecutionStatus,
    read_status: Callable[[], Awaitable[ExecutionStatus]],
    *,
    poll_seconds: float,
    keepalive_seconds: float,
    disconnected: Callable[[], Awaitable[bool]],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """The encoded stream of one execution from its reading `first`; stops when the client has gone."""
    sequence = 1
    yield StatusEvent("status", first.to_wire()).encode(sequence)
    previous = first
    quiet_since = clock()
    while not previous.is_terminal:
        await anyio.sleep(poll_seconds)
        if await disconnected():
            return
        try:
            current = await read_status()
        except Exception as exc:
            log.warning("events of %s: reading its status failed, ending the stream: %s", first.execution_id, exc)
            return
        for event in status_changes(previous, current):
            sequence += 1
            yield event.encode(sequence)
            quiet_since = clock()
        if clock() - quiet_since >= keepalive_seconds:
            yield KEEPALIVE
            quiet_since = clock()
        previous = current


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
    tags=["executions"],
    summary="The caller's executions, newest first",
    responses=problems(400),
)
def list_executions(
    caller: CallerDep,
    state: StateDep,
    status: Annotated[ExecutionState | None, Query(description="only executions in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[
        str | None, Query(description="the nextCursor of the previous page", pattern=_PRINTABLE.pattern)
    ] = None,
    since: Annotated[
        DateTime | None,
        Query(description="only executions whose state changed then or later (ISO 8601; UTC without offset)"),
    ] = None,
) -> ExecutionPage:
    """One page of this key's tenant's executions (an operator's key: every tenant's), and the cursor of the next
    page (null after the last). `?status=failed&since=...` is the dead-letter view; retry them with
    `POST /api/executions/retry`."""
    page, next_cursor = executions.list_executions(
        caller,
        state.records,
        state.store,
        status=status.value if status is not None else None,
        limit=limit,
        cursor=cursor,
        since=since,
    )
    return ExecutionPage(executions=[StatusDocument.of(found) for found in page], next_cursor=next_cursor)


@router.get(
    "/api/execute/{execution_id}/deliveries",
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
    found = await run_checks(
        {
            "database": lambda: check_database(state.store),
            "daemon": lambda: check_daemon(state.instance, settings.daemon_max_age_seconds),
            "storage": lambda: check_storage(state.artifacts),
        },
        settings.health_timeout_seconds,
    )
    body: dict[str, object] = {name: "ok" if problem is None else "down" for name, problem in found.items()}
    if found["database"] is None:
        with suppress(Exception):  # the circuits only inform: a failed read is no reason to fail /health
            if providers := await run_in_threadpool(open_circuits, state.store):
                body["providers"] = providers
    down = {name: problem for name, problem in found.items() if problem is not None}
    if not down:
        return Health.model_validate(body)
    detail = "; ".join(f"{name} is down: {problem}" for name, problem in down.items())
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
