"""The words every layer shares, defined once (plain enums; the wire strings are the SDK's)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal


class Priority(StrEnum):
    """A plan's `priority`: higher runs first when runs queue."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def dagster_priority(self) -> int:
        """The value of Dagster's `dagster/priority` tag: higher runs first."""
        return {Priority.HIGH: 10, Priority.NORMAL: 0, Priority.LOW: -10}[self]

    @property
    def rank(self) -> int:
        """Order in which pending submissions are taken: 0 first."""
        return {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}[self]


# The aspect ratios a plan may ask for, as the SDK spells them, with their (across, down) shape.
AspectRatioName = Literal["16:9", "9:16", "1:1", "4:5"]
ASPECT_RATIOS: dict[str, tuple[int, int]] = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:5": (4, 5)}
# Ratios a result may be recognised as although no plan asks for them (e.g. an input of 4:3).
RECOGNISED_RATIOS: dict[str, tuple[int, int]] = {**ASPECT_RATIOS, "4:3": (4, 3), "3:4": (3, 4)}


def has_ratio(width: int, height: int, shape: tuple[int, int]) -> bool:
    """Whether a frame has the (across, down) `shape` up to rounding to even pixels (2 px, or 1% for large frames)."""
    across, down = shape
    return abs(width - height * across / down) <= max(2.0, width * 0.01)


class ExecutionState(StrEnum):
    """The `status` of an execution in the status document and the webhook."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


# The states an execution ends in; each is also the webhook event sent for it.
TERMINAL_STATES: tuple[ExecutionState, ...] = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELED)


class WebhookEvent(StrEnum):
    """What a webhook reports: an execution's end (named for its terminal state), or an event a plan subscribes to."""

    COMPLETED = ExecutionState.COMPLETED.value
    FAILED = ExecutionState.FAILED.value
    CANCELED = ExecutionState.CANCELED.value
    EXECUTION_STARTED = "execution.started"
    NODE_COMPLETED = "node.completed"
    NODE_FAILED = "node.failed"

    @property
    def is_end(self) -> bool:
        """The event of an execution's end: sent once per execution, always last of its events."""
        return self in (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELED)

    @property
    def is_node_event(self) -> bool:
        """One delivery per node of the execution, rather than one per execution."""
        return self in (WebhookEvent.NODE_COMPLETED, WebhookEvent.NODE_FAILED)

    @classmethod
    def ended(cls, state: ExecutionState) -> WebhookEvent:
        if not state.is_terminal:
            raise ValueError(f"an execution that is {state.value!r} has not ended")
        return cls(state.value)


# What a plan's `webhook.events` may subscribe to; the event of the end is always sent.
SUBSCRIBABLE_EVENTS: tuple[WebhookEvent, ...] = (
    WebhookEvent.EXECUTION_STARTED,
    WebhookEvent.NODE_COMPLETED,
    WebhookEvent.NODE_FAILED,
)


class NodeState(StrEnum):
    """The `status` of one plan node in the status document (`jobs.<id>.status`)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # parked on its provider job: no worker held until the job ends
    COMPLETED = "completed"
    REUSED = "reused"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def has_result(self) -> bool:
        return self in (NodeState.COMPLETED, NodeState.REUSED)


def wire_fields(record: Any) -> dict[str, Any]:
    """A dataclass record as the JSON the API and CLI print: every field in order, named in camelCase as the API's
    models name theirs; enums by value, times in ISO 8601, and records within (alone or in lists) the same way."""
    # pydantic costs `--help` 0.07 s, which reads this module and prints no record.
    from pydantic.alias_generators import to_camel

    return {to_camel(field.name): _wire_value(getattr(record, field.name)) for field in dataclasses.fields(record)}


class WireRecord:
    """A dataclass whose wire form is `wire_fields` of it, every field as it is."""

    def to_wire(self) -> dict[str, Any]:
        return wire_fields(self)


def _wire_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_wire_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return wire_fields(value)
    return value
