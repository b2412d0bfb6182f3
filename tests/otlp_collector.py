"""A real OTLP/HTTP trace endpoint on 127.0.0.1: accepts `POST /v1/traces`, decodes the protobuf, keeps the spans."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .http_servers import serve_in_background, shut_down


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector decoded it (ids as lowercase hex, as in a traceparent)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # '' for a root span
    kind: int
    start_ns: int
    end_ns: int
    status: int  # Status.StatusCode
    status_message: str
    attributes: dict[str, Any]
    events: list[str]
    links: list[tuple[str, str]]  # (trace id, span id)
    service: str

    @property
    def is_error(self) -> bool:
        return self.status == Status.STATUS_CODE_ERROR

    @property
    def is_ok(self) -> bool:
        return self.status == Status.STATUS_CODE_OK


def _decoded(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(_span(span, str(resource.get("service.name", ""))))
    return spans


def _span(span: Span, service: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status=span.status.code,
        status_message=span.status.message,
        attributes={a.key: _value(a.value) for a in span.attributes},
        events=[event.name for event in span.events],
        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
        service=service,
    )


@dataclass
class OtlpCollector:
    """Receives OTLP/HTTP protobuf exports of spans (what `OTEL_EXPORTER_OTLP_ENDPOINT` points at)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    posts: int = 0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OtlpCollector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector._lock:
                    collector.posts += 1
                    collector.spans.extend(_decoded(request))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = serve_in_background(Handler, poll_interval=0.05)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server)
            self._server = None

    @property
    def endpoint(self) -> str:
        """The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter adds `/v1/traces`)."""
        return f"http://127.0.0.1:{self.port}"

    def received(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if trace_id is None or span.trace_id == trace_id]

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], *, trace_id: str | None = None, timeout: float = 60
    ) -> list[ReceivedSpan]:
        """The spans (of `trace_id`) once `found(spans)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received(trace_id)
            if found(spans):
                return spans
            names = sorted(span.name for span in spans)
            assert time.monotonic() < deadline, f"spans so far in trace {trace_id}: {names}"
            time.sleep(0.1)
