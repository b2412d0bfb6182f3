"""Dagster storage on PostgreSQL with one connection pool per process: dagster-postgres's NullPool opened
about 13,000 connections for 50 one-node executions, costing PostgreSQL more CPU than the daemon and
workers together (benchmarks/bench_workers.py).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from video_pipelines.submissions.database_url import psycopg2_url

POOL_SIZE_ENV = "VIDEO_PIPELINES_DB_POOL_SIZE"
# Connections a process keeps open (bursts open short-lived overflow ones): small, because every
# process of a deployment (API, webserver, daemon, code servers, worker children) keeps its own.
DEFAULT_POOL_SIZE = 2
MAX_OVERFLOW = 20
# Reconnect now and then: a long-lived process keeps no backend forever (pre-ping checks each checkout).
POOL_RECYCLE_SECONDS = 1800

_engines: dict[str, sqlalchemy.engine.Engine] = {}
_tables_checked: set[str] = set()
_engines_lock = threading.Lock()


def _forget_engines_after_fork() -> None:
    """A forked child (Celery's prefork pool) must not use, nor close, its parent's connections."""
    global _engines_lock
    _engines_lock = threading.Lock()  # another thread of the parent may have held it as it forked
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _tables_checked.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def pool_size() -> int:
    raw = os.environ.get(POOL_SIZE_ENV, "")
    try:
        size = int(raw) if raw else DEFAULT_POOL_SIZE
    except ValueError:
        raise ValueError(f"${POOL_SIZE_ENV} must be a whole number, got {raw!r}") from None
    if size < 1:
        raise ValueError(f"${POOL_SIZE_ENV} must be at least 1, got {size}")
    return size


def shared_engine(url: str) -> sqlalchemy.engine.Engine:
    with _engines_lock:
        if url not in _engines:
            _engines[url] = sqlalchemy.create_engine(
                url,
                isolation_level="AUTOCOMMIT",  # what dagster-postgres's own engines use
                pool_size=pool_size(),
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_SECONDS,
                pool_pre_ping=True,
            )
        return _engines[url]


class PostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage with a plain PostgreSQL URL and a per-process connection pool."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> DagsterPostgresStorage:
        config = dict(config_value)
        if config.get("postgres_url"):
            config["postgres_url"] = psycopg2_url(str(config["postgres_url"]))
        token_provider = get_token_provider_from_config(config)
        if token_provider is not None:  # tokens are injected per connection: leave that to dagster-postgres
            return DagsterPostgresStorage.from_config_value(inst_data, config)  # type: ignore[arg-type]
        url = psycopg2_url(pg_url_from_config(config))
        engine = shared_engine(url)
        storage = DagsterPostgresStorage(
            inst_data=inst_data,
            postgres_url=url,
            # Once a process has seen the tables, later instances need not look again.
            should_autocreate_tables=url not in _tables_checked and bool(config.get("should_autocreate_tables", True)),
        )
        _tables_checked.add(url)
        # The storages made their own NullPool engines (no connection yet); use the shared pool.
        # The webserver later swaps in its own pool through optimize_for_webserver, as before.
        for part in (storage._run_storage, storage._event_log_storage, storage._schedule_storage):
            part._engine = engine
        remember_schema_checks(storage._schedule_storage)
        return storage


def remember_schema_checks(schedules: Any) -> None:
    """Dagster's schedule storage reflects the database's table names on nearly every call, and a sensor tick makes
    several: a quarter of the daemon's CPU (py-spy, `benchmarks/bench_parking.py`). Its run and event-log storages
    remember their answers; this one now does too. Only "yes" is remembered: tables and built indexes stay."""
    for name in ("has_instigators_table", "_has_instigators_table", "has_secondary_index_table"):
        setattr(schedules, name, _remember_yes(getattr(schedules, name), keyed=False))  # some take a connection
    schedules.has_built_index = _remember_yes(schedules.has_built_index, keyed=True)  # by migration name


def _remember_yes(check: Callable[..., bool], *, keyed: bool) -> Callable[..., bool]:
    known: set[tuple[Any, ...]] = set()

    @functools.wraps(check)
    def remembered(*args: Any) -> bool:
        key = args if keyed else ()
        if key in known:
            return True
        answer = check(*args)
        if answer:
            known.add(key)
        return answer

    return remembered
