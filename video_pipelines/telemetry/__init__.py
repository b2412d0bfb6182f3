"""Telemetry: OpenTelemetry spans and W3C trace contexts, importing nothing else from the package."""

from __future__ import annotations
