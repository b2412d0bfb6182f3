"""Timestamps read back from the store's databases, always as timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite keeps no offset (only UTC is ever written); PostgreSQL answers in the session's time zone.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def required_utc(value: datetime) -> datetime:
    converted = as_utc(value)
    assert converted is not None
    return converted
