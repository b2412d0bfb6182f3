"""The production storage keeps one connection pool per process and database (video_pipelines/deployment/postgres.py).

Against real PostgreSQL: instances built one after another (as the daemon's sensor ticks and a
worker's runs build them) open only a few connections between them, a forked child gets its own,
and a connection PostgreSQL closed behind our back is replaced before it is used.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
import sqlalchemy
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.errors import DagsterRunAlreadyExists
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import event
from sqlalchemy.pool import Pool

from video_pipelines.deployment import postgres
from video_pipelines.deployment.instance import render_instance_yaml
from video_pipelines.deployment.postgres import DEFAULT_POOL_SIZE, POOL_SIZE_ENV, pool_size, shared_engine
from video_pipelines.submissions import pooling
from video_pipelines.submissions.database_url import psycopg2_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def home(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with the production dagster.yaml (PostgreSQL, default launcher) on a fresh database."""
    monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", postgres_url)
    folder = tmp_path / "dagster_home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text(render_instance_yaml(postgres=True))
    return folder


@pytest.fixture
def connects() -> Iterator[list[int]]:
    """Every new DBAPI connection SQLAlchemy opens in this process while the test runs."""
    opened: list[int] = []

    def count(_dbapi_connection: Any, _record: Any) -> None:
        opened.append(1)

    event.listen(Pool, "connect", count)
    try:
        yield opened
    finally:
        event.remove(Pool, "connect", count)


def use(instance: dg.DagsterInstance) -> None:
    """A little of what a sensor tick or a run does: the run, event log and schedule storages."""
    instance.get_runs(limit=5)
    instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=5)
    instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.RUN_SUCCESS), limit=5)
    instance.all_instigator_state()


def test_instances_in_one_process_share_a_few_connections(home: Path, connects: list[int]) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:  # creates Dagster's tables
        use(instance)
    connects.clear()
    for _ in range(10):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            use(instance)
    # NullPool (dagster-postgres's default) opened one or more per statement, and each new
    # instance looked for the tables again: over a hundred here. Now the pool's, at most.
    assert len(connects) <= DEFAULT_POOL_SIZE, len(connects)


def test_the_tables_are_still_created_on_a_new_database(home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(), run_id=None)
        assert instance.get_run_by_id(run.run_id) is not None


def _child_uses_the_database(home: str, results: Any) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        results.put(len(instance.get_runs()))


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        for _ in range(2):  # as Celery's prefork pool does: children come and go
            child = context.Process(target=_child_uses_the_database, args=(str(home), results))
            child.start()
            child.join(60)
            assert child.exitcode == 0
            assert results.get(timeout=5) == 1
        # Had a child closed or used the parent's pooled connection, this would fail or hang.
        assert len(instance.get_runs()) == 1


def test_a_connection_closed_by_the_server_is_replaced(
    home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection idle longer than PING_IDLE_SECONDS is checked before use; here every one is.
    monkeypatch.setattr(pooling, "PING_IDLE_SECONDS", 0.0)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs()
        admin = psycopg2.connect(postgres_url)
        admin.autocommit = True
        with admin.cursor() as cursor:  # what a restart, failover or idle timeout does to our pool
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (terminated,) = cursor.fetchone()
        admin.close()
        assert terminated >= 1
        assert instance.get_runs() == []


def test_one_engine_per_database_in_a_process(postgres_url: str) -> None:
    url = psycopg2_url(postgres_url)
    assert shared_engine(url) is shared_engine(url)
    assert shared_engine(url).pool.size() == pool_size()  # type: ignore[attr-defined]


def test_the_pool_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POOL_SIZE_ENV, "5")
    assert pool_size() == 5
    for bad in ("0", "two"):
        monkeypatch.setenv(POOL_SIZE_ENV, bad)
        with pytest.raises(ValueError, match=POOL_SIZE_ENV):
            pool_size()


def test_a_sensor_tick_does_not_look_the_tables_up_again(home: Path) -> None:
    """Dagster's schedule storage read PostgreSQL's catalog (`get_table_names`) on nearly every call: 8 times for
    each sensor tick's bookkeeping. Once a process has seen the tables, ticks go to the tables alone, also through
    the new instance each worker's run and each sensor evaluation makes."""
    state = InstigatorState(
        RemoteInstigatorOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("here"), "repo"), "a_sensor"),
        InstigatorType.SENSOR,
        InstigatorStatus.RUNNING,
    )

    def tick(instance: dg.DagsterInstance) -> None:  # the storage calls the sensor daemon makes for each tick
        storage = instance.schedule_storage
        assert storage is not None
        assert storage.get_instigator_state(state.instigator_origin_id, state.selector_id) is not None
        storage.update_instigator_state(state)
        instance.all_instigator_state()
        instance.get_runs(limit=5)  # and the run storage's checks

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.schedule_storage is not None
        instance.schedule_storage.add_instigator_state(state)
        tick(instance)  # the first looks the tables up
    catalog: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "pg_catalog" in statement:
            catalog.append("".join(traceback.format_stack()))

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            with dg.DagsterInstance.from_config(str(home)) as instance:
                tick(instance)
    finally:
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    assert catalog == [], f"{len(catalog)} catalog queries, the first from {catalog[0]}"


def test_events_commit_without_waiting_for_the_disk_runs_wait_and_neither_costs_a_round_trip(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's events and sensor ticks commit asynchronously (a third of a run's time was waiting on the disk);
    runs' rows and tags, which hold the ledger of provider jobs, stay durable. One connection serves both in turn:
    the mode rides on the write that changes it (no SET of its own), and no NOTIFY follows an event."""
    monkeypatch.setenv(POOL_SIZE_ENV, "1")  # one connection: every write below takes the same one
    postgres._forget_engines_after_fork()  # a pool of the new size
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    def mode_now(instance: dg.DagsterInstance) -> str:  # read on the connection itself, past the engine's hooks
        connection = instance.run_storage._engine.raw_connection()  # type: ignore[attr-defined]
        try:
            with contextlib.closing(connection.cursor()) as cursor:
                cursor.execute("SHOW synchronous_commit")
                return str(cursor.fetchone()[0])
        finally:
            connection.close()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", note)
        try:
            for turn in range(2):
                instance.report_engine_event(f"hello {turn}", run)  # the event log: not durable
                assert mode_now(instance) == "off"
                instance.add_run_tags(run.run_id, {"video/provider_job/n": f"p{turn}"})  # the run storage: durable
                assert mode_now(instance) == "on"
                instance.get_run_by_id(run.run_id)  # a read sets nothing
                assert mode_now(instance) == "on"
        finally:
            event.remove(sqlalchemy.engine.Engine, "after_cursor_execute", note)
        assert [s for s in sent if s.startswith("SET") and ";" not in s] == []  # no SET on its own
        assert [s for s in sent if "NOTIFY" in s] == []
        assert [s for s in sent if s.startswith("SET synchronous_commit TO off; INSERT INTO event_logs")]
        assert {entry.message for entry in instance.all_logs(run.run_id)} >= {"hello 0", "hello 1"}
        # A write that fails takes its SET back: the next one sets the mode again.
        instance.report_engine_event("last", run)
        with pytest.raises(DagsterRunAlreadyExists):
            instance.run_storage.add_run(run)  # the same run again: its write and the SET it carried roll back
        instance.add_run_tags(run.run_id, {"video/provider_job/n": "p2"})
        assert mode_now(instance) == "on"


def test_asset_events_are_indexed_as_dagster_postgres_does(home: Path) -> None:
    """The event log without NOTIFY still indexes what a run reports: materializations by asset, check evaluations."""
    key = dg.AssetKey(["video", "generate_video"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "EventLogWithoutNotify"
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=None, metadata={"n": 1}))
        check = dg.AssetCheckEvaluation(asset_key=key, check_name="streams", passed=True)
        instance.report_dagster_event(
            dg.DagsterEvent(dg.DagsterEventType.ASSET_CHECK_EVALUATION.value, job_name="g", event_specific_data=check),
            run_id=run.run_id,
        )
        materialization = instance.get_latest_materialization_event(key)
        assert materialization is not None and materialization.asset_materialization is not None
        assert materialization.asset_materialization.metadata["n"].value == 1
        checks = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, "streams"), limit=1)
        assert [c.status.value for c in checks] == ["SUCCEEDED"]


def test_a_finished_run_keeps_its_status_whatever_is_reported_late(home: Path) -> None:
    """A cancel that read the run still going, reported as it succeeded, used to leave it CANCELING for minutes; a
    run worker's start reported after a cancel ended the run made it STARTED again. The first end stays."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ended = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
        instance.report_run_canceling(ended)  # still going: the cancel goes through
        assert status(instance, ended.run_id) is dg.DagsterRunStatus.CANCELING
        instance.report_run_canceled(ended)
        succeeded = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
        instance.handle_run_event(
            succeeded.run_id,
            dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name="j", message="done"),
        )

        instance.report_run_canceling(succeeded)  # read while still STARTED, reported once it succeeded
        instance.report_run_failed(ended, "late")
        instance.handle_run_event(
            ended.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="j", message="late start")
        )
        assert status(instance, succeeded.run_id) is dg.DagsterRunStatus.SUCCESS
        assert status(instance, ended.run_id) is dg.DagsterRunStatus.CANCELED
        # Tags still change on a finished run; its late events are kept in its event log.
        instance.add_run_tags(ended.run_id, {"after": "end"})
        run = instance.get_run_by_id(ended.run_id)
        assert run is not None and run.tags["after"] == "end" and run.status is dg.DagsterRunStatus.CANCELED
        failures = instance.get_records_for_run(ended.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert [record.event_log_entry.message for record in failures] == ["late"]

    # A second deployment process finds the trigger there and installs nothing.
    postgres._tables_checked.clear()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert status(instance, succeeded.run_id) is dg.DagsterRunStatus.SUCCESS


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status
