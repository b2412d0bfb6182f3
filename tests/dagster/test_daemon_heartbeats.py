"""`submit`'s daemon check reads the heartbeats Dagster itself wrote, from its run storage, without Dagster:
on the embedded default (SQLite) and on the production PostgreSQL instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat

from video_pipelines.deployment.daemons import LAUNCHING_DAEMONS, read_heartbeats, stale_daemons
from video_pipelines.deployment.instance import render_instance_yaml
from video_pipelines.submissions import SubmissionStore

from .test_cli import EXAMPLES, cli, local_env


def beat(instance: dg.DagsterInstance, daemon_type: str, at: float) -> None:
    instance.add_daemon_heartbeat(DaemonHeartbeat(timestamp=at, daemon_type=daemon_type, daemon_id="d1", errors=[]))


def agrees_with_dagster(home: Path, store: SubmissionStore) -> None:
    now = time.time()
    assert read_heartbeats(home, store) == {}  # no daemon ever ran: nothing launches
    with dg.DagsterInstance.get() as instance:
        beat(instance, "SENSOR", now - 5)
        beat(instance, "QUEUED_RUN_COORDINATOR", now - 500)
        beat(instance, "SENSOR", now - 2)  # a daemon's row is replaced by its next beat
        theirs = {kind: found.timestamp for kind, found in instance.get_daemon_heartbeats().items()}
    ours = read_heartbeats(home, store)
    assert ours == theirs == {"SENSOR": pytest.approx(now - 2), "QUEUED_RUN_COORDINATOR": pytest.approx(now - 500)}
    assert ours is not None
    assert stale_daemons(ours, LAUNCHING_DAEMONS, 60.0, now) == ["QUEUED_RUN_COORDINATOR (last heartbeat 500 s ago)"]


def test_sqlite_heartbeats_are_read_from_the_run_storage(dagster_home: Path) -> None:
    with SubmissionStore.from_env(dagster_home) as store:
        agrees_with_dagster(dagster_home, store)


@pytest.fixture
def postgres_home(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", postgres_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text(render_instance_yaml(postgres=True, celery=True))
    yield tmp_path


@pytest.mark.postgres
def test_postgres_heartbeats_are_read_from_the_deployment_database(postgres_home: Path) -> None:
    with SubmissionStore.from_env(postgres_home) as store:
        # The store's own tables come first: Dagster's may not exist yet.
        assert read_heartbeats(postgres_home, store) == {}
        with dg.DagsterInstance.get():
            pass
        agrees_with_dagster(postgres_home, store)


def test_an_instance_configured_elsewhere_is_left_to_dagster(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'elsewhere'}\n")
    with SubmissionStore.from_env(tmp_path) as store:
        assert read_heartbeats(tmp_path, store) is None


def test_submit_warns_only_while_no_daemon_beats(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = local_env(DAGSTER_HOME=str(home))
    plan = str(EXAMPLES / "product_demo.json")
    done = cli("submit", plan, cwd=tmp_path, env=env)
    assert done.returncode == 0 and "warning: no daemon is running" in done.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for daemon_type in LAUNCHING_DAEMONS:
            beat(instance, daemon_type, time.time())
    done = cli("submit", plan, cwd=tmp_path, env=env)
    assert (done.returncode, done.stderr) == (0, "")
