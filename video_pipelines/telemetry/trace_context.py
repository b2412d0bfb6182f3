"""An execution's trace context: the W3C `traceparent` of its span, made at submission (in the caller's
trace when it sent one) or derived from the run id (a UUID is a trace id), so every process finds it.
Standard library only: the status document must not pay for OpenTelemetry when tracing is off."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_SAMPLED = 0x01


@dataclass(frozen=True)
class TraceContext:
    """A span's place in a trace: trace id (128 bits), span id (64 bits), sampled or not."""

    trace_id: int
    span_id: int
    sampled: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.trace_id < 2**128 or not 0 < self.span_id < 2**64:
            raise ValueError(f"not a valid trace context: trace id {self.trace_id:x}, span id {self.span_id:x}")

    @property
    def trace_id_hex(self) -> str:
        """The trace id as 32 lowercase hex digits (the status document's `traceId`)."""
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    @property
    def traceparent(self) -> str:
        """The W3C `traceparent` header value: `00-<trace id>-<span id>-<flags>`."""
        return f"00-{self.trace_id_hex}-{self.span_id_hex}-{_SAMPLED if self.sampled else 0:02x}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context of a W3C `traceparent` header, None when missing or invalid (never an error); other
    versions are read by 00's fields, version ff and zero ids are invalid."""
    match = _TRACEPARENT.match(value.strip()) if value is not None else None
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceContext(trace_id, span_id, sampled=bool(int(flags, 16) & _SAMPLED))


def _random_id(bits: int) -> int:
    while True:
        value = secrets.randbits(bits)
        if value:
            return value


def new_execution_context(trace_parent: str | None = None) -> TraceContext:
    """The context of a new execution's span: in the trace of `trace_parent` when valid, else in a new trace."""
    parent = parse_traceparent(trace_parent)
    if parent is None:
        return TraceContext(_random_id(128), _random_id(64))
    return TraceContext(parent.trace_id, _random_id(64), sampled=parent.sampled)


def derived_context(execution_id: str) -> TraceContext:
    """The context of a run that stored none: its UUID is the trace id (else hashed); the span id a hash."""
    digest = hashlib.sha256(f"video-pipelines execution {execution_id}".encode()).digest()
    try:
        trace_id = uuid.UUID(execution_id).int
    except ValueError:
        trace_id = int.from_bytes(digest[8:24], "big")
    return TraceContext(trace_id or 1, int.from_bytes(digest[:8], "big") or 1)


def execution_context(traceparent: str | None, execution_id: str) -> TraceContext:
    """An execution's context: the one it stored (`traceparent`) when valid, else the one derived from its id."""
    return parse_traceparent(traceparent) or derived_context(execution_id)
