"""Timestamps read back from the store's databases, always as timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def moment(now: datetime | None, error: type[Exception]) -> datetime:
    """`now` as aware UTC (the current time when None); `error` for a naive datetime, whose zone is unknown."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise error("`now` must be timezone-aware (UTC), not a naive datetime")
    return now.astimezone(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite keeps no offset (only UTC is ever written); PostgreSQL answers in the session's time zone.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def required_utc(value: datetime) -> datetime:
    converted = as_utc(value)
    assert converted is not None
    return converted
