"""Reaching remote hosts safely: the SSRF guard (`guard`), and pinned requests and downloads (`fetch`); and what
we send them, JSON as JavaScript writes it (`js_json`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
    from video_pipelines.net.js_json import js_json as js_json
    from video_pipelines.net.js_json import js_json_bytes as js_json_bytes

# Each name's module, imported at the first use of one of its names: the guard alone needs no HTTP client.
_HOMES = {
    "atomic_file": "fetch",
    "certificate_error": "fetch",
    "fetch_to_file": "fetch",
    "open_pinned": "fetch",
    "shared_ssl_context": "fetch",
    "AllowedHosts": "guard",
    "Destination": "guard",
    "parse_allowed_hosts": "guard",
    "redact_url": "guard",
    "resolve_destination": "guard",
    "js_json": "js_json",
    "js_json_bytes": "js_json",
}

if not TYPE_CHECKING:  # mypy reads the imports above; a typo stays an error

    def __getattr__(name: str) -> object:
        if name not in _HOMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
