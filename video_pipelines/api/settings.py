"""The HTTP API's settings, read from the environment once, when the app is made.

| variable | meaning | default |
|---|---|---|
| `VIDEO_PIPELINES_API_MAX_BODY_BYTES` | largest request body accepted (413 above it) | 1048576 (1 MiB) |
| `VIDEO_PIPELINES_API_RATE_LIMIT` | requests per API key, `N/second`, `N/minute` or `N/hour` (429 above it) | off |
| `VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS` | how often `/events` reads an execution's status | 1 |
| `VIDEO_PIPELINES_API_EVENTS_KEEPALIVE_SECONDS` | a keep-alive comment after this long without an event | 15 |
| `VIDEO_PIPELINES_API_DAEMON_MAX_AGE_SECONDS` | `/health`: a daemon heartbeat older than this is down | 60 |
| `VIDEO_PIPELINES_ALLOWED_HOSTS` | hosts/CIDRs allowed although private (see `net.guard`) | none |
| `VIDEO_PIPELINES_PUBLIC_URL` | where clients reach the API: result URLs under its `/artifacts` are the API's | none |
| `VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS` | final videos unfetched this long after completing are suggested | 86400 |

A bad value is a UsageError naming the variable at start-up, never at the first request.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from video_pipelines.deployment.daemons import DAEMON_MAX_AGE_SECONDS
from video_pipelines.errors import UsageError, VideoPipelineError
from video_pipelines.executions.costs import DEFAULT_UNFETCHED_GRACE_SECONDS, UNFETCHED_GRACE_ENV
from video_pipelines.net.guard import AllowedHosts

MAX_BODY_ENV = "VIDEO_PIPELINES_API_MAX_BODY_BYTES"
RATE_LIMIT_ENV = "VIDEO_PIPELINES_API_RATE_LIMIT"
EVENTS_POLL_ENV = "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS"
EVENTS_KEEPALIVE_ENV = "VIDEO_PIPELINES_API_EVENTS_KEEPALIVE_SECONDS"
DAEMON_MAX_AGE_ENV = "VIDEO_PIPELINES_API_DAEMON_MAX_AGE_SECONDS"
PUBLIC_URL_ENV = "VIDEO_PIPELINES_PUBLIC_URL"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour)s?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` per `period_seconds` for one API key (a token bucket of that size)."""

    requests: int
    period_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`120/minute`, `10/second`, `1000/hour`; raises UsageError for anything else."""
        match = _RATE.fullmatch(text)
        if match is None or int(match.group(1)) < 1:
            raise UsageError(f"{RATE_LIMIT_ENV} must look like 120/minute (N/second, N/minute or N/hour, N >= 1)")
        return cls(int(match.group(1)), _PERIODS[match.group(2).lower()])

    @property
    def per_second(self) -> float:
        return self.requests / self.period_seconds


class TokenBuckets:
    """One token bucket per key (thread-safe). The buckets live in this process's memory, on purpose (no round
    trip per request); a limit that must hold across processes belongs in the gateway."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when they were counted)
        self._lock = threading.Lock()

    def take(self, key: str) -> int | None:
        """Take a token for `key`: None when there was one, else the seconds to wait for the next (>= 1)."""
        now = self._clock()
        capacity = float(self.limit.requests)
        with self._lock:
            tokens, updated = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - updated) * self.limit.per_second)
            taken = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if taken else tokens, now)
            return None if taken else max(1, math.ceil((1.0 - tokens) / self.limit.per_second))


def _number(
    environ: Mapping[str, str], name: str, default: float, *, integer: bool = False, zero: bool = False
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "a whole number" if integer else "a number"
        raise UsageError(f"{name} must be {kind} {'0 or more' if zero else 'greater than 0'}, got {raw!r}")
    return value


@dataclass(frozen=True)
class ApiSettings:
    """How `video-pipelines serve` listens and what it accepts; see the module docstring."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_limit: RateLimit | None = None
    events_poll_seconds: float = 1.0
    events_keepalive_seconds: float = 15.0
    daemon_max_age_seconds: float = DAEMON_MAX_AGE_SECONDS
    # Each /health check gets this long; a check that takes longer counts as down.
    health_timeout_seconds: float = 5.0
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts)
    # Where clients reach this API, when it is not `url` (a proxy, a load balancer, a public name).
    public_url: str | None = None
    unfetched_grace_seconds: float = DEFAULT_UNFETCHED_GRACE_SECONDS

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
    ) -> ApiSettings:
        env = os.environ if environ is None else environ
        rate = env.get(RATE_LIMIT_ENV, "").strip()
        try:
            allowed = AllowedHosts.from_env(env)
        except VideoPipelineError as exc:
            raise UsageError(str(exc)) from None
        return cls(
            host=host,
            port=port,
            max_body_bytes=int(_number(env, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, integer=True)),
            rate_limit=RateLimit.parse(rate) if rate and rate.lower() != "off" else None,
            events_poll_seconds=_number(env, EVENTS_POLL_ENV, cls.events_poll_seconds),
            events_keepalive_seconds=_number(env, EVENTS_KEEPALIVE_ENV, cls.events_keepalive_seconds),
            daemon_max_age_seconds=_number(env, DAEMON_MAX_AGE_ENV, cls.daemon_max_age_seconds),
            allowed_hosts=allowed,
            public_url=env.get(PUBLIC_URL_ENV, "").strip().rstrip("/") or None,
            unfetched_grace_seconds=_number(env, UNFETCHED_GRACE_ENV, DEFAULT_UNFETCHED_GRACE_SECONDS, zero=True),
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def artifact_urls(self) -> tuple[str, ...]:
        """Where result URLs that this API's `/artifacts` serves begin (the fetches of those it records)."""
        return tuple(dict.fromkeys(f"{base}/artifacts/" for base in (self.public_url, self.url) if base))
