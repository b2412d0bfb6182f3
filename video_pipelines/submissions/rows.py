"""What every table of the store does alike: rows read into records, timestamps as aware UTC, and
writes of which exactly one racing caller wins."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from sqlalchemy.dialects import postgresql, sqlite

R = TypeVar("R", bound="DataclassInstance")
T = TypeVar("T")
UpsertInsert: TypeAlias = "postgresql.Insert | sqlite.Insert"


def moment(now: datetime | None, error: type[Exception] = SubmissionStoreError) -> datetime:
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


def record(cls: type[R], row: sa.RowMapping, **given: Any) -> R:
    """A `cls` whose fields are the row's columns of the same names (timestamps as aware UTC), but for `given`."""
    values = {field.name: row[field.name] for field in dataclasses.fields(cls) if field.name not in given}
    return cls(**{name: as_utc(v) if isinstance(v, datetime) else v for name, v in values.items()}, **given)


class Rows:
    """Statements on the store's database: writes on `engine`, reads on `reader` (see `SubmissionStore.reader`)."""

    def __init__(self, engine: sa.Engine, reader: sa.Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine

    def first(self, query: sa.Select[Any], convert: Callable[[sa.RowMapping], T]) -> T | None:
        with self.reader.connect() as connection:
            row = connection.execute(query).mappings().first()
        return convert(row) if row is not None else None

    def all(self, query: sa.Select[Any], convert: Callable[[sa.RowMapping], T]) -> list[T]:
        with self.reader.connect() as connection:
            return [convert(row) for row in connection.execute(query).mappings()]

    def value(self, query: sa.Select[Any]) -> Any:
        with self.reader.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    def tuples(self, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        with self.reader.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def changed(self, statement: sa.Executable) -> int:
        """How many rows one UPDATE or DELETE changed: made conditional, it tells the one caller that won a race."""
        with self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)

    def move(self, table: sa.Table, where: sa.ColumnElement[bool], sources: Collection[str], **values: Any) -> int:
        """How many rows `where` selects moved from a state in `sources`: one conditional UPDATE, so of several
        racing callers exactly one finds a row still in a source state."""
        return self.changed(table.update().where(where, table.c.state.in_(sources)).values(**values))

    def insert_once(self, made: T, insert: sa.Insert, existing: Callable[[], T | None]) -> tuple[T, bool]:
        """(made, True) once `insert` is committed; (what `existing` finds, False) when its key is taken, also
        by a process that inserted it between our read and our insert."""
        found = existing()
        if found is not None:
            return found, False
        try:
            with self.engine.begin() as connection:
                connection.execute(insert)
        except sa.exc.IntegrityError:
            found = existing()
            if found is None:
                raise
            return found, False
        return made, True


def insert_into(table: sa.Table, dialect: str) -> UpsertInsert:
    """An INSERT into `table` that can take ON CONFLICT, in the store's dialect (PostgreSQL's or SQLite's). The
    engine has loaded its own dialect's module already; importing both here cost every command 30 ms."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
