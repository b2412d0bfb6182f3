"""Reaching remote hosts safely: the SSRF guard (`guard`), pinned requests (`pinned`) and downloads (`fetch`)."""

from __future__ import annotations

from video_pipelines.net.fetch import atomic_file, fetch_to_file
from video_pipelines.net.guard import AllowedHosts, Destination, parse_allowed_hosts, redact_url, resolve_destination
from video_pipelines.net.pinned import certificate_error, open_pinned

__all__ = [
    "AllowedHosts",
    "Destination",
    "atomic_file",
    "certificate_error",
    "fetch_to_file",
    "open_pinned",
    "parse_allowed_hosts",
    "redact_url",
    "resolve_destination",
]
