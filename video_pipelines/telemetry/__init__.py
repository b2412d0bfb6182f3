"""Telemetry: the traces the service sends its operators (its metrics are `executions.metrics`).

- `trace_context` — an execution's W3C trace context: made at submission, derived from the
  run id for a run launched directly (standard library only).
- `tracing` — OpenTelemetry spans, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
  is set, the no-op tracer when it is not.

Plain Python with no other import from this package: the provider HTTP stack and the webhook
sender, low in the layers, open their spans here.
"""

from __future__ import annotations
