"""Reaching remote hosts safely: the SSRF guard and the media downloader.

- `AllowedHosts` / `parse_allowed_hosts`: the operator's exceptions, from
  `VIDEO_PIPELINES_ALLOWED_HOSTS` (comma-separated hostnames, `*.domain`, IPs and CIDRs).
- `resolve_destination`: checks a URL and pins the addresses it may connect to; raises
  `BlockedDestinationError` for private, loopback, link-local, metadata... addresses.
- `open_pinned`: one request sent to the checked IP (Host header and SNI of the original
  host, no redirects, no proxies), with an optional deadline for the whole request.
- `fetch_to_file`: downloads to disk through that check, connecting to the checked IP;
  `atomic_file`: how a download lands, the file appearing only once complete.
- `redact_url`: a URL as it may appear in logs and errors (no credentials, no query string).
"""

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
