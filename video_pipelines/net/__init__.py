"""Reaching remote hosts safely: the SSRF guard (`guard`), pinned requests (`pinned`) and downloads (`fetch`)."""

from __future__ import annotations

from video_pipelines.net.fetch import MAX_REDIRECTS, atomic_file, fetch_to_file
from video_pipelines.net.guard import (
    ALLOWED_HOSTS_ENV,
    METADATA_ADDRESSES,
    AllowedHosts,
    Destination,
    blocked_reason,
    parse_allowed_hosts,
    redact_url,
    resolve_destination,
)
from video_pipelines.net.pinned import certificate_error, open_pinned

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "MAX_REDIRECTS",
    "METADATA_ADDRESSES",
    "AllowedHosts",
    "Destination",
    "atomic_file",
    "blocked_reason",
    "certificate_error",
    "fetch_to_file",
    "open_pinned",
    "parse_allowed_hosts",
    "redact_url",
    "resolve_destination",
]
