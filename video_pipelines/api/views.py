"""The operator's views over the API: an execution's log (paged, or followed as server-sent events), costs and
suggestions, the dead letters and their bulk retry, and (operator keys only) the run workers and the queue.

A tenant's key sees its own executions and costs; an operator's key (`api-keys create --operator`) every
tenant's, and alone sees `/api/workers` and `/api/queue` (403 to a tenant's key).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import ValidationError

from video_pipelines import executions
from video_pipelines.api.models import (
    BulkRetry,
    BulkRetryRequest,
    CostReport,
    CostSuggestion,
    DateTime,
    LogLineDocument,
    LogPage,
    QueueDocument,
    Worker,
)
from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.routes import (
    KEEPALIVE,
    REF_TEMPLATE,
    CallerDep,
    StateDep,
    decode_json,
    problems,
    read_body,
    sse_item,
)
from video_pipelines.executions import Caller
from video_pipelines.executions.costs import GroupBy, cost_report, node_spends, suggestions_for
from video_pipelines.executions.dead_letters import retry_all
from video_pipelines.executions.logs import LOG_CURSOR, MAX_LINES, LogRead, read_logs
from video_pipelines.orchestration.workers.inspection import live_workers, queued_runs_by_priority
from video_pipelines.submissions.worker_beats import WorkerBeats
from video_pipelines.vocabulary import ExecutionState, Priority

log = logging.getLogger(__name__)

router = APIRouter()

OPERATOR_ONLY = (
    "only an operator's API key sees the deployment's workers and queue "
    "(made with `video-pipelines api-keys create --name NAME --operator`)"
)


def operator(caller: CallerDep) -> Caller:
    """The caller, when its key is an operator's; 403 otherwise."""
    if not caller.is_operator:
        raise ApiProblem(403, OPERATOR_ONLY)
    return caller


OperatorDep = Annotated[Caller, Depends(operator)]


# --- logs --------------------------------------------------------------------------------------


def log_stream_schema(ref_template: str) -> dict[str, Any]:
    """The stream of `?follow=true`: a `start` event, `log` events carrying a line, then one `end` event."""
    line = {"contentSchema": {"$ref": ref_template.format(model=LogLineDocument.__name__)}}
    after = "the cursor that reads on after this line (Last-Event-ID resumes there)"
    return {
        "oneOf": [
            sse_item("start", "first: the cursor the stream reads on after (null: from the first line)", {}, ids=None),
            sse_item("log", "one line of the log", line, ids=after),
            sse_item("end", "the execution ended and every line was sent; the stream ends", {}, ids=None),
        ]
    }


async def follow_log(
    read_page: Callable[[str | None], Awaitable[LogRead]],
    cursor: str | None,
    *,
    page_size: int,
    poll_seconds: float,
    keepalive_seconds: float,
    disconnected: Callable[[], Awaitable[bool]],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """The log's lines after `cursor` as server-sent events, as they are written, until the execution has ended
    and its last line is sent (then an `end` event), or the client has gone. A failed read ends the stream.
    A `start` event comes first, so a client knows the stream is open before any line is written."""
    yield format_sse_event(data_str=json.dumps({"cursor": cursor}), event="start")
    quiet_since = clock()
    while True:
        try:
            page = await read_page(cursor)
        except Exception as exc:
            log.warning("log stream: reading the log failed, ending the stream: %s", exc)
            return
        for line_cursor, line in page.lines:
            data = json.dumps(line.to_wire(), ensure_ascii=False, separators=(",", ":"))
            yield format_sse_event(data_str=data, event="log", id=line_cursor)
            quiet_since = clock()
        cursor = page.cursor
        if page.is_last(page_size):
            yield format_sse_event(data_str=json.dumps({"cursor": cursor}), event="end")
            return
        if len(page.lines) >= page_size:
            continue  # more is written already: no wait
        if clock() - quiet_since >= keepalive_seconds:
            yield KEEPALIVE
            quiet_since = clock()
        await anyio.sleep(poll_seconds)
        if await disconnected():
            return


@router.get(
    "/api/execute/{execution_id}/logs",
    # JSON, or with follow=true a stream: FastAPI would take a response model for the only answer.
    response_class=Response,
    tags=["operations"],
    summary="An execution's log, paged or followed live",
    responses={
        200: {
            "description": "A page of lines (JSON), or with `follow=true` the lines as server-sent events as they "
            "are written, until the execution has ended (a `: keep-alive` comment when nothing happened for a while).",
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=LogPage.__name__)}},
                "text/event-stream": {"itemSchema": log_stream_schema(REF_TEMPLATE)},
            },
        },
        **problems(400, 404),
    },
)
async def logs(
    execution_id: str,
    request: Request,
    caller: CallerDep,
    state: StateDep,
    cursor: Annotated[
        str | None,
        Query(
            description="the cursor of the previous page (or line); none: from the start",
            pattern=LOG_CURSOR.pattern,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LINES, description="lines per page")] = 200,
    follow: Annotated[
        bool, Query(description="stream the lines as they are written, until the execution ends")
    ] = False,
    # Not in the OpenAPI document: an optional header is "string or null" there, and null is sent as "null".
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> Response:
    """The lines of the execution's runs' logs (Dagster's event log, our ops' lines among them), oldest first, each
    with its level and the plan node it belongs to. Secrets (webhook secret, provider keys, signed URLs) are
    blanked. A followed stream that reconnects with `Last-Event-ID` (a line's id, which EventSource sends by
    itself) reads on after that line; another value is ignored."""
    await run_in_threadpool(executions.require_visible, caller, state.records, state.store, execution_id)

    def read(after: str | None) -> LogRead:
        return read_logs(state.records, state.store, execution_id, cursor=after, limit=limit)

    if not follow:
        page = await run_in_threadpool(read, cursor)
        body = LogPage.model_validate(page.to_wire())
        return Response(body.model_dump_json(by_alias=True), media_type="application/json")
    # Last-Event-ID is a reconnecting client's hint (the SSE spec's): one that is not a line's id is ignored, and the
    # `start` event says where the stream reads from.
    start = cursor or (last_event_id if last_event_id and LOG_CURSOR.match(last_event_id) else None)
    await run_in_threadpool(read, start)  # a bad cursor is a 400 now, not a stream that ends at once

    async def read_async(after: str | None) -> LogRead:
        return await anyio.to_thread.run_sync(read, after)

    stream = follow_log(
        read_async,
        start,
        page_size=limit,
        poll_seconds=state.settings.events_poll_seconds,
        keepalive_seconds=state.settings.events_keepalive_seconds,
        disconnected=request.is_disconnected,
    )
    return EventSourceResponse(stream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- costs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """`?from=&to=`: executions submitted in [from, to); either end open."""

    start: DateTime | None
    end: DateTime | None


def _window(
    start: Annotated[
        DateTime | None,
        Query(alias="from", description="executions submitted at or after (ISO 8601; UTC without offset)"),
    ] = None,
    end: Annotated[DateTime | None, Query(alias="to", description="executions submitted before (ISO 8601)")] = None,
) -> Window:
    return Window(start, end)


WindowDep = Annotated[Window, Depends(_window)]


@router.get(
    "/api/costs",
    tags=["costs"],
    summary="What the caller's executions cost, grouped",
    responses=problems(400),
)
def costs(
    caller: CallerDep,
    state: StateDep,
    window: WindowDep,
    group_by: Annotated[GroupBy, Query(alias="groupBy")] = GroupBy.PROVIDER,
) -> CostReport:
    """The recorded cost of the caller's executions submitted in the window (an operator's key: every tenant's),
    by provider, operation or day, and `savedUsd`: what reuse saved at list prices."""
    spends = list(node_spends(caller, state.records, state.store, start=window.start, end=window.end))
    return CostReport.model_validate(cost_report(spends, group_by).to_wire())


@router.get(
    "/api/costs/suggestions",
    tags=["costs"],
    summary="Ways to spend less, from the caller's own records",
    responses=problems(400),
)
def cost_suggestions(caller: CallerDep, state: StateDep, window: WindowDep) -> list[CostSuggestion]:
    """Each with the saving it would have brought: paid nodes run again with `cache: false` that made an identical
    video, failed executions holding paid results (retry them), a cheaper provider for the same operation,
    fallbacks taken, and completed executions whose final videos nobody fetched (only videos whose URL is this
    API's `/artifacts`, which records their fetches: a CDN's or a presigned URL's are not seen, so not suggested)."""
    settings = state.settings
    found = suggestions_for(
        caller,
        state.records,
        state.store,
        start=window.start,
        end=window.end,
        served=settings.artifact_urls,
        grace_seconds=settings.unfetched_grace_seconds,
    )
    return [CostSuggestion.model_validate(each.to_wire()) for each in found]


# --- dead letters ------------------------------------------------------------------------------

RETRY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=BulkRetryRequest.__name__)}}},
    },
}
# A bulk retry's body is a few fields.
MAX_RETRY_BODY_BYTES = 4096


@router.post(
    "/api/executions/retry",
    status_code=202,
    tags=["executions"],
    summary="Retry the caller's failed executions",
    openapi_extra=RETRY_BODY,
    responses=problems(400, 413),
)
async def retry_executions(request: Request, caller: CallerDep, state: StateDep) -> BulkRetry:
    """Retry up to `limit` (at most 100) of the caller's newest failed (or canceled) executions since `since`, as
    `POST /api/execute/{id}/retry` does each: completed nodes reused. Those that never ran are `skipped`."""
    body = decode_json(await read_body(request, MAX_RETRY_BODY_BYTES))
    try:
        asked = BulkRetryRequest.model_validate(body)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()]
        raise ApiProblem(400, "; ".join(parts)) from None
    done = await run_in_threadpool(
        retry_all,
        caller,
        state.records,
        state.store,
        status=ExecutionState(asked.status),
        since=asked.since,
        limit=asked.limit,
    )
    return BulkRetry.model_validate(done.to_wire())


# --- workers and queue (operators) -------------------------------------------------------------


@router.get(
    "/api/workers",
    tags=["operations"],
    summary="The run workers (operator keys)",
    responses=problems(403),
)
def workers(_operator: OperatorDep, state: StateDep) -> list[Worker]:
    """The run workers of this deployment that beat within the last seconds, on any broker: name, concurrency,
    active runs and their last beat. `[]` when none runs, or when runs are not launched through a broker."""
    found = live_workers(state.instance, WorkerBeats(state.store))
    return [Worker.model_validate(view.to_wire()) for view in found]


@router.get(
    "/api/queue",
    tags=["operations"],
    summary="What waits to run (operator keys)",
    responses=problems(403),
)
def queue(_operator: OperatorDep, state: StateDep) -> QueueDocument:
    """Submissions not launched yet, and `execute_plan` runs in Dagster's run queue by their plan's priority."""
    pending = state.store.count_by_state().get("pending", 0)
    queued = queued_runs_by_priority(state.instance)
    return QueueDocument.model_validate(
        {"pendingSubmissions": pending, "queuedRuns": {priority.value: queued[priority] for priority in Priority}}
    )
