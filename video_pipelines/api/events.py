"""`GET /api/execute/{id}/events`: server-sent events made by polling the status and diffing readings, so
they show what the status document shows. A failed reading ends the stream: EventSource reconnects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi.sse import format_sse_event
from pydantic import BaseModel

from video_pipelines.api.models import NodeEvent, StatusDocument
from video_pipelines.executions import ExecutionStatus

log = logging.getLogger(__name__)

EventKind = Literal["status", "node", "execution"]
KEEPALIVE = b": keep-alive\n\n"
# What each kind of event carries as its `data`, as the OpenAPI document says.
PAYLOADS: dict[EventKind, tuple[type[BaseModel], str]] = {
    "status": (StatusDocument, "the status document as it is when the client connects (always first)"),
    "node": (NodeEvent, "a node's state changed"),
    "execution": (StatusDocument, "the execution's status changed; the stream ends after a terminal one"),
}


def stream_schema(ref_template: str) -> dict[str, Any]:
    """The events of the stream, one schema per kind, in OpenAPI 3.2's `itemSchema` form for server-sent
    events (as FastAPI writes its own streams): `data` is JSON text whose schema is the payload's model."""
    return {
        "oneOf": [
            {
                "type": "object",
                "title": f"{kind} event",
                "description": description,
                "required": ["event", "id", "data"],
                "properties": {
                    "event": {"const": kind},
                    "id": {"type": "string", "description": "1, 2, ... in the order the events are sent"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": ref_template.format(model=model.__name__)},
                    },
                },
            }
            for kind, (model, description) in PAYLOADS.items()
        ]
    }


@dataclass(frozen=True)
class StatusEvent:
    """One event of the stream: its kind and its JSON data."""

    kind: EventKind
    data: dict[str, Any]

    def encode(self, event_id: int) -> bytes:
        data = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return format_sse_event(data_str=data, event=self.kind, id=str(event_id))

    @property
    def is_terminal(self) -> bool:
        """Whether this event carries the execution's terminal status (the stream ends after it)."""
        return self.kind != "node" and self.data["status"] in {"completed", "failed", "canceled"}


def current_state(status: ExecutionStatus) -> StatusEvent:
    return StatusEvent("status", status.to_wire())


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
    yield current_state(first).encode(sequence)
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
