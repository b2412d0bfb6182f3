"""Telemetry: what the service tells its operators about itself.

- `metrics` — the Prometheus metrics of `GET /metrics`, computed at scrape time from the
  database and the orchestrator's records, and the `Counters` that processes add their
  observations to (node seconds, provider HTTP errors).
- `trace_context` — an execution's W3C trace context: made at submission, derived from the
  run id for a run launched directly (standard library only).
- `tracing` — OpenTelemetry spans, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
  is set, the no-op tracer when it is not.

Plain Python: no Dagster import.
"""

from __future__ import annotations
