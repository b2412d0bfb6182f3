"""Dagster storage on PostgreSQL with one connection pool per process: dagster-postgres's NullPool opened
about 13,000 connections for 50 one-node executions, costing PostgreSQL more CPU than the daemon and
workers together (benchmarks/bench_workers.py).

A finished run's status is final here, kept by a trigger on Dagster's `runs` table. Dagster writes a run's
status from what it read a moment before, with no condition: a cancel that read the run still going and
reports CANCELING as the run succeeds left it CANCELING with nothing to end it (until run monitoring's cancel
timeout, minutes later); a run worker that read the run STARTING and reports its start after a cancel ended
it made it STARTED again. The first end recorded now stays; the late event is kept in the event log.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.submissions.pooling import ping_when_idle

POOL_SIZE_ENV = "VIDEO_PIPELINES_DB_POOL_SIZE"
# Connections a process keeps open (bursts open short-lived overflow ones): small, because every
# process of a deployment (API, webserver, daemon, code servers, worker children) keeps its own.
DEFAULT_POOL_SIZE = 2
MAX_OVERFLOW = 20
# Reconnect now and then: a long-lived process keeps no backend forever.
POOL_RECYCLE_SECONDS = 1800
_NOT_DURABLE = "video_pipelines_not_durable"
_COMMIT_MODE = "video_pipelines_synchronous_commit"

EVENT_ID = SqlEventLogStorageTable.c.id
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


def shared_engine(url: str, *, durable: bool = True) -> sqlalchemy.engine.Engine:
    """This process's pool for `url`. Not `durable`: the same pool, but commits return before PostgreSQL has
    flushed them to disk (`synchronous_commit = off`): a crash of PostgreSQL itself (not of our processes, not a
    clean restart) may lose the last fraction of a second of them, never corrupt anything. One pool either way:
    a second pool per process doubled the deployment's connections past PostgreSQL's 100."""
    with _engines_lock:
        if url not in _engines:
            engine = sqlalchemy.create_engine(
                url,
                isolation_level="AUTOCOMMIT",  # what dagster-postgres's own engines use
                pool_size=pool_size(),
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_SECONDS,
            )
            ping_when_idle(engine)
            sqlalchemy.event.listen(engine, "before_cursor_execute", _commit_mode_as_asked, retval=True)
            sqlalchemy.event.listen(engine, "handle_error", _commit_mode_unknown)
            _engines[url] = engine
        engine = _engines[url]
        return engine if durable else engine.execution_options(**{_NOT_DURABLE: True})


# Statements whose commit the mode concerns, and that PostgreSQL runs in one round trip after a SET.
_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH", "NOTIFY")


def _commit_mode_as_asked(
    connection: sqlalchemy.Connection, cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> tuple[str, Any]:
    """Each write commits as the engine it was sent through asks. A pooled connection serves both (the run storage,
    durable, and the event log, not), and a SET of its own on each change was a round trip per checkout (a run's
    events and run updates alternate): the SET now rides on the write that needs it, in the same round trip, and a
    read (which commits nothing) never sets it. Other statements (DDL, SHOW) get the SET before them."""
    wanted = "off" if connection.get_execution_options().get(_NOT_DURABLE) else "on"
    info = connection.connection.info  # this DBAPI connection's: a new one starts at the server's "on"
    if info.get(_COMMIT_MODE, "on") == wanted or statement.lstrip()[:6].upper() == "SELECT":
        return statement, parameters
    info[_COMMIT_MODE] = wanted
    if statement.lstrip().split(None, 1)[0].upper() in _WRITES:
        return f"SET synchronous_commit TO {wanted}; {statement}", parameters
    cursor.execute(f"SET synchronous_commit TO {wanted}")
    return statement, parameters


def _commit_mode_unknown(context: sqlalchemy.engine.ExceptionContext) -> None:
    """A failed statement's transaction takes its SET back with it: the next write sets the mode again."""
    if context.connection is not None:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):  # an invalidated connection is discarded anyway
            context.connection.connection.info[_COMMIT_MODE] = None  # unknown: neither "on" nor "off"


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
        # Events and sensor ticks are a run's and the daemon's busiest writes: ~30 commits a run, each waiting
        # ~3 ms for the disk here (a third of a worker's time in a run). They commit without waiting; what a crash
        # of PostgreSQL could take back is found again (a node's result, a webhook's claim, a provider job's ledger
        # tag: our own store and the run storage, which stay durable). Runs' rows and tags stay durable.
        bookkeeping = shared_engine(url, durable=False)
        storage = DagsterPostgresStorage(
            inst_data=inst_data,
            postgres_url=url,
            # Once a process has seen the tables, later instances need not look again.
            should_autocreate_tables=url not in _tables_checked and bool(config.get("should_autocreate_tables", True)),
        )
        if url not in _tables_checked:
            keep_finished_runs_finished(engine)
        _tables_checked.add(url)
        # The storages made their own NullPool engines (no connection yet); use the shared pool.
        # The webserver later swaps in its own pool through optimize_for_webserver, as before.
        storage._run_storage._engine = engine
        storage._event_log_storage._engine = bookkeeping
        storage._event_log_storage.__class__ = EventLogWithoutNotify
        storage._schedule_storage._engine = bookkeeping
        remember_schema_checks(storage, url)
        return storage


class EventLogWithoutNotify(PostgresEventLogStorage):
    """dagster-postgres's event log without the `NOTIFY` after each event, which its own code keeps only "to support
    version skew" (its event watch polls): a deployment here runs one Dagster version, and the NOTIFY was a round trip
    more per event (a run writes about 36) and a lock on PostgreSQL's notification queue at each commit."""

    def store_event(self, event: EventLogEntry) -> None:
        with self._connect() as connection:
            event_id = int(connection.execute(self.prepare_insert_event(event).returning(EVENT_ID)).scalar_one())
        # What dagster-postgres's `store_event` does after its insert and notify.
        if event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS and event.dagster_event.asset_key:  # type: ignore[union-attr]
            with self.index_transaction() as connection:
                self._store_asset_event_tags(connection, [event], [event_id])
                self._store_asset_event(connection, event, event_id)
        if event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)


_FINISHED_RUNS_TRIGGER = "video_pipelines_finished_runs_stay_finished"
# Skipping the row's update (RETURN NULL) skips its run body too: nothing else changes with a refused status.
_FINISHED_RUNS_DDL = f"""
CREATE OR REPLACE FUNCTION {_FINISHED_RUNS_TRIGGER}() RETURNS trigger AS $$
BEGIN
    IF OLD.status IN ('SUCCESS', 'FAILURE', 'CANCELED') AND NEW.status IS DISTINCT FROM OLD.status THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {_FINISHED_RUNS_TRIGGER} ON runs;
CREATE TRIGGER {_FINISHED_RUNS_TRIGGER} BEFORE UPDATE OF status ON runs
    FOR EACH ROW EXECUTE FUNCTION {_FINISHED_RUNS_TRIGGER}();
"""


def keep_finished_runs_finished(engine: sqlalchemy.engine.Engine) -> None:
    """Install the trigger that keeps a finished run's status (module docstring), once per database."""
    name = {"name": _FINISHED_RUNS_TRIGGER}
    installed = sqlalchemy.text("SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = 'runs'::regclass")
    lock = sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:name))")
    unlock = sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:name))")
    with engine.connect() as connection:  # AUTOCOMMIT: the DDL below commits as one statement
        if connection.execute(installed, name).first() is not None:
            return
        # Every process of a new deployment starts at once: one installs it, the others wait, then find it.
        connection.execute(lock, name)
        try:
            if connection.execute(installed, name).first() is None:
                connection.exec_driver_sql(_FINISHED_RUNS_DDL)
        finally:
            connection.execute(unlock, name)


# Dagster's storages read PostgreSQL's catalog to learn which of their migrations ran: the schedule storage on nearly
# every call (a sensor tick makes several), the run storage on every run event and run query. Per part, the checks
# whose "yes" holds for the life of the process (a table or column, once there, stays).
_SCHEMA_CHECKS = {
    "_run_storage": (
        "has_run_stats_index_cols",
        "has_bulk_actions_selector_cols",
        "has_backfill_id_column",
        "has_backfill_tags_table",
        "has_bulk_action_job_name_column",
    ),
    "_event_log_storage": ("_has_asset_key_col_on_connection",),  # its other checks are cached properties
    "_schedule_storage": (
        "has_instigators_table",
        "_has_instigators_table",
        "has_secondary_index_table",
        "has_built_index",
    ),
}


# What this process has seen exist, by database URL, storage part, check and name checked: a worker's runs each
# make a new instance, and their storages would look again.
_seen: set[tuple[str, str, str, tuple[str, ...]]] = set()


def remember_schema_checks(storage: DagsterPostgresStorage, url: str) -> None:
    """Remember each "yes" of the storages' schema checks: they were a third of the daemon's CPU (py-spy during
    `benchmarks/bench_parking.py`), 8 catalog queries per sensor tick and one per run event."""
    for part_name, checks in _SCHEMA_CHECKS.items():
        part = getattr(storage, part_name)
        for name in checks:
            setattr(part, name, _remember_yes(getattr(part, name), (url, part_name, name)))


def _remember_yes(check: Callable[..., bool], where: tuple[str, str, str]) -> Callable[..., bool]:
    @functools.wraps(check)
    def remembered(*args: object) -> bool:
        key = (*where, tuple(arg for arg in args if isinstance(arg, str)))  # names checked; never the connection
        if key in _seen:
            return True
        answer = check(*args)
        if answer:
            _seen.add(key)
        return answer

    return remembered
