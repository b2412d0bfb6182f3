"""One backoff and one Retry-After reader, shared by node steps, provider calls and webhook deliveries."""

from __future__ import annotations

import email.utils
import math
import random
from datetime import UTC, datetime


def jittered(delay: float, fraction: float) -> float:
    """`delay` moved at random by up to +-`fraction` of itself, so clients coming back do not arrive together."""
    return float(delay * random.uniform(1.0 - fraction, 1.0 + fraction))


def backoff_delay(retry: int, *, base: float, cap: float = math.inf, jitter: float = 0.5) -> float:
    """Seconds before retry number `retry + 1`: `base * 2**retry`, at most `cap`, jittered by +-`jitter`."""
    return jittered(min(cap, base * 2.0**retry), jitter)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date); None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are GMT
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
