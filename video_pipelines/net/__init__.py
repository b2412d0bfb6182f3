"""Reaching remote hosts safely: the SSRF guard (`guard`), and pinned requests and downloads (`fetch`); and what
we send them, JSON as JavaScript writes it (`js_json`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.lazy import lazy_exports

if TYPE_CHECKING:
    from video_pipelines.net.fetch import atomic_file as atomic_file
    from video_pipelines.net.fetch import certificate_error as certificate_error
    from video_pipelines.net.fetch import fetch_to_file as fetch_to_file
    from video_pipelines.net.fetch import open_pinned as open_pinned
    from video_pipelines.net.fetch import shared_ssl_context as shared_ssl_context
    from video_pipelines.net.guard import AllowedHosts as AllowedHosts
    from video_pipelines.net.guard import Destination as Destination
    from video_pipelines.net.guard import parse_allowed_hosts as parse_allowed_hosts
    from video_pipelines.net.guard import redact_url as redact_url
    from video_pipelines.net.guard import resolve_destination as resolve_destination
    from video_pipelines.net.javascript import js_json as js_json
    from video_pipelines.net.javascript import js_json_bytes as js_json_bytes

# Each module's names, the module imported at the first use of one: the guard alone needs no HTTP client.
_EXPORTS = {
    "fetch": ("atomic_file", "certificate_error", "fetch_to_file", "open_pinned", "shared_ssl_context"),
    "guard": ("AllowedHosts", "Destination", "parse_allowed_hosts", "redact_url", "resolve_destination"),
    "javascript": ("js_json", "js_json_bytes"),
}

if not TYPE_CHECKING:  # mypy reads the imports above: a name that does not exist stays an error
    __getattr__ = lazy_exports(__name__, _EXPORTS)
