"""Telemetry: what the service tells its operators about itself.

- `metrics` — the Prometheus metrics of `GET /metrics`, computed at scrape time from the
  database and the orchestrator's records, and the `Counters` that processes add their
  observations to (node seconds, provider HTTP errors).

Plain Python: no Dagster import.
"""

from __future__ import annotations
