"""Pooled PostgreSQL connections checked without a round trip while busy.

A pooled connection idle longer than `PING_IDLE_SECONDS` is checked (SELECT 1) before it is handed out, so one that
PostgreSQL closed meanwhile (a restart, a failover, an idle timeout) is replaced unseen. One used a moment ago is
checked by looking at its socket: a server that ends a session (shutdown, restart, pg_terminate_backend) says so
on it, or closes it, and an idle session of ours expects nothing, so anything there means the session is gone.
SQLAlchemy's pool_pre_ping pings every checkout, and Dagster checks out a connection per statement: the pings were a
quarter of the daemon's CPU, and a round trip more on each of our store's queries (a continuation run makes dozens).
"""

from __future__ import annotations

import contextlib
import math
import select
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import ConnectionPoolEntry

PING_IDLE_SECONDS = 1.0
_CHECKED_IN = "video_pipelines_checked_in"


def ping_when_idle(engine: sa.Engine) -> sa.Engine:
    """`engine`, whose pool checks a connection before handing it out only when it sat idle (SQLAlchemy's "custom
    ping" recipe): a DisconnectionError makes the pool discard that connection and hand out a new one."""
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    def ping(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_CHECKED_IN, -math.inf) < PING_IDLE_SECONDS:
            if _server_spoke(dbapi_connection, dbapi_error):
                raise sa.exc.DisconnectionError("the server ended this pooled connection's session")
            return
        try:
            with contextlib.closing(dbapi_connection.cursor()) as cursor:
                cursor.execute("SELECT 1")
        except dbapi_error as exc:
            raise sa.exc.DisconnectionError(f"a pooled connection was closed: {exc}") from exc

    def note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    sa.event.listen(engine, "checkout", ping)
    sa.event.listen(engine, "checkin", note_checkin)
    return engine


def _server_spoke(dbapi_connection: Any, dbapi_error: type[Exception]) -> bool:
    """Whether the server sent something, or closed the socket, while the connection sat in the pool."""
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, dbapi_error):  # a socket or connection already closed
        return True
    return bool(readable)
