"""OpenTelemetry spans of executions, their nodes, provider calls and webhook deliveries.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; off, the SDK is not imported. Our own provider (not the global
one) sees env changes. Spans are exported at exit, also of forkserver children (`os._exit` skips atexit),
so a slow collector never slows nodes. Tracing errors are logged, never raised.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing.util
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, ParamSpec

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from video_pipelines.telemetry.trace_context import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME: Final = "video-pipelines"
SCOPE: Final = "video_pipelines"
# The variables that decide whether and where spans go; a change makes a new provider.
_SETTINGS: Final = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
)
_W3C = TraceContextTextMapPropagator()
_NO_OP_TRACER: Final = trace.NoOpTracer()

Attributes = Mapping[str, AttributeValue]
P = ParamSpec("P")
log = logging.getLogger(__name__)


def best_effort(record: Callable[P, None]) -> Callable[P, None]:
    """For a function that only records spans: an error in it is logged, never raised (tracing fails nothing)."""

    @functools.wraps(record)
    def recorded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            log.warning("%s failed; no span recorded", record.__qualname__, exc_info=True)

    return recorded


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Whether these variables ask for spans to be exported (an OTLP endpoint set, the SDK not disabled)."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    no_exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
    return bool(endpoint and endpoint.strip()) and not disabled and not no_exporter


# The ids `record_span` asks the provider's id generator for, in this context only.
_pinned_ids: ContextVar[TraceContext | None] = ContextVar("video_pipelines_pinned_span_ids", default=None)


def _provider(environ: Mapping[str, str]) -> TracerProvider:
    # Imported only when tracing is on: the SDK and the exporter cost ~0.2 s of imports.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class PinnableIds(RandomIdGenerator):
        """Random ids, except inside `record_span`, which fixes the ids of the span it records."""

        def generate_span_id(self) -> int:
            pinned = _pinned_ids.get()
            return pinned.span_id if pinned is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            pinned = _pinned_ids.get()
            return pinned.trace_id if pinned is not None else super().generate_trace_id()

        def is_trace_id_random(self) -> bool:
            # A trace id derived from a run id is not the W3C "random" kind.
            return _pinned_ids.get() is None

    # An explicit service name wins over OTEL_SERVICE_NAME in Resource.create: pass the variable's.
    name = environ.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}), id_generator=PinnableIds(), shutdown_on_exit=False
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Tracing:
    """A process's tracer: the SDK's, exporting over OTLP/HTTP, or the API's no-op tracer."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer = provider.get_tracer(SCOPE) if provider is not None else _NO_OP_TRACER
        self._lock = threading.Lock()
        self._shut_down = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tracing:
        return cls(_provider(environ) if tracing_enabled(environ) else None)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def flush(self, timeout_millis: int = 10_000) -> bool:
        """Export the spans ended so far; True when they all went (or there is nothing to export)."""
        return self.provider.force_flush(timeout_millis) if self.provider is not None else True

    def shutdown(self) -> None:
        """Export what is left and stop the exporter's thread; once."""
        with self._lock:
            if self._shut_down or self.provider is None:
                return
            self._shut_down = True
        self.provider.shutdown()


_lock = threading.Lock()
_current: tuple[tuple[str | None, ...], Tracing] | None = None


def tracing() -> Tracing:
    """This process's tracing, made from the environment the first time (and again if its settings change)."""
    global _current
    settings = tuple(os.environ.get(name) for name in _SETTINGS)
    current = _current
    if current is not None and current[0] == settings:
        return current[1]
    with _lock:
        if _current is not None and _current[0] == settings:
            return _current[1]
        previous = _current[1] if _current is not None else None
        made = Tracing.from_env(os.environ)
        if made.enabled:
            atexit.register(made.shutdown)
            # Also at the exit of a multiprocessing child, which `os._exit`s past atexit under forkserver.
            multiprocessing.util.Finalize(None, made.shutdown, exitpriority=100)
        _current = (settings, made)
    if previous is not None:
        previous.shutdown()
    return made


def _span_context(context: TraceContext) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if context.sampled else TraceFlags.DEFAULT)
    return SpanContext(context.trace_id, context.span_id, is_remote=True, trace_flags=flags)


def _parent_context(parent: TraceContext | None) -> otel_context.Context | None:
    """A context whose current span is `parent`, recorded elsewhere; None: the current context."""
    if parent is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(_span_context(parent)), otel_context.Context())


@contextmanager
def span_in(
    parent: TraceContext | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    links: Sequence[TraceContext] = (),
) -> Iterator[trace.Span]:
    """A current span for the block, child of `parent` (another process's) or the current span; errors recorded."""
    span_links = [trace.Link(_span_context(link)) for link in links]
    with tracing().tracer.start_as_current_span(
        name, context=_parent_context(parent), kind=kind, attributes=attributes, links=span_links
    ) as span:
        yield span


class HttpSpan:
    """The span of one HTTP request: the headers that carry it (`traceparent`, also naming a no-op tracer's
    stand-in for its parent; none without a trace), and what the answer was."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.headers: dict[str, str] = {}
        _W3C.inject(self.headers, context=trace.set_span_in_context(span, otel_context.Context()))

    def answered(self, status_code: int) -> None:
        self.span.set_attribute("http.response.status_code", status_code)
        if status_code >= 400:
            # HTTP client semantic conventions: a 4xx or 5xx answer is an error of the call.
            self.span.set_attribute("error.type", str(status_code))
            self.span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))

    def failed(self, error: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, error))


@contextmanager
def http_client_span(
    name: str, method: str, url: str, *, parent: TraceContext | None = None, attributes: Attributes | None = None
) -> Iterator[HttpSpan]:
    """A CLIENT span for one request to `url` (shown as given: pass it redacted); send `HttpSpan.headers` with it."""
    fields: dict[str, AttributeValue] = {"http.request.method": method, "url.full": url, **(attributes or {})}
    with span_in(parent, name, kind=SpanKind.CLIENT, attributes=fields) as span:
        yield HttpSpan(span)


def record_span(
    context: TraceContext,
    name: str,
    *,
    parent: TraceContext | None = None,
    start_ns: int,
    end_ns: int,
    attributes: Attributes | None = None,
    ok: bool = False,
    error: str | None = None,
    events: Sequence[tuple[str, int]] = (),
) -> None:
    """Record an ended span with `context`'s ids (no-op when off), child of `parent` or a root; `events`
    are (name, ns) marks; status error with `error`, ok with `ok`, else unset."""
    if not context.sampled:
        return
    tracer = tracing().tracer
    if tracer is _NO_OP_TRACER:
        return
    token = _pinned_ids.set(context)
    try:
        span = tracer.start_span(
            name, context=_parent_context(parent) or otel_context.Context(), attributes=attributes, start_time=start_ns
        )
    finally:
        _pinned_ids.reset(token)
    for event, at in events:
        span.add_event(event, timestamp=at)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    elif ok:
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=max(end_ns, start_ns))
