"""A plan's URLs whose host is a literal address (also `127.1` or `2130706433`), refused at submission when
not public; hostnames are checked and pinned only at fetch or delivery, as resolution can change."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from video_pipelines.errors import PlanValidationError
from video_pipelines.net.guard import ALLOWED_HOSTS_ENV, METADATA_ADDRESSES, AllowedHosts, IPAddress, blocked_reason
from video_pipelines.plan import Plan

_SCHEMES = ("http://", "https://")
_NUMERIC_HOST = frozenset("0123456789abcdefxABCDEFX.")


def literal_address(url: str) -> IPAddress | None:
    """The address an http(s) URL's host is written as, or None for a hostname (or not a URL)."""
    import httpx  # the fetcher's own parser, imported only by a plan with a URL (a tenth of a second with click, rich)

    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return None  # the plan's own validation says what is wrong with it
    if not host:
        return None
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    # `127.1`, `0x7f000001`, `2130706433`: inet_aton reads them as the resolver would, without DNS.
    if host[0].isdigit() and set(host) <= _NUMERIC_HOST:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal(url: str, allowed: AllowedHosts) -> str | None:
    """Why `url` is refused at submission (its host is a literal address that is not allowed), or None."""
    address = literal_address(url)
    if address is None:
        return None
    reason = blocked_reason(address)
    if reason is None or allowed.allows_address(address):
        return None
    plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    if plain in METADATA_ADDRESSES:
        return (
            f"{address} is a cloud metadata endpoint; only a {ALLOWED_HOSTS_ENV} entry naming that exact address "
            "allows it"
        )
    return f"{address} is not a public address ({reason}); add it to {ALLOWED_HOSTS_ENV} to allow it"


def _url_params(params: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for name, value in params.items():
        where = f"{path}.{name}"
        if isinstance(value, Mapping):
            yield from _url_params(value, where)
        elif isinstance(value, str) and name.lower().endswith("url") and value.startswith(_SCHEMES):
            yield where, value


def destination_problems(plan: Plan, allowed: AllowedHosts) -> list[str]:
    """A problem (`<node>.params.<name>: ...`, `plan.webhook.url: ...`) for each refused URL of `plan`."""
    urls = [pair for node in plan.nodes for pair in _url_params(node.params, f"{node.id}.params")]
    if plan.webhook is not None:
        urls.append(("plan.webhook.url", plan.webhook.url))
    return [f"{where}: refused: {why}" for where, url in urls if (why := refusal(url, allowed)) is not None]


def check_destinations(plan: Plan, allowed: AllowedHosts) -> None:
    """Raise PlanValidationError naming every URL of `plan` refused at submission."""
    problems = destination_problems(plan, allowed)
    if problems:
        raise PlanValidationError(problems)
