"""Real `dagster-webserver` and `dagster-daemon` processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster._core.scheduler.instigation import TickStatus

from video_pipelines.deployment.daemons import read_heartbeats
from video_pipelines.deployment.instance import render_instance_yaml
from video_pipelines.doors import client as client_api
from video_pipelines.submissions import SubmissionStore

from .conftest import POSTGRES_ADMIN_URL, admin_connection, free_port, fresh_database
from .process_table import stop_process_group, stop_process_groups

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
LOCATION = "video_pipelines"
WEBHOOK_SENSORS = ("webhook_on_started", "webhook_on_completed", "webhook_on_failed", "webhook_on_canceled")
CLIENT_ENV = (
    "DAGSTER_HOME",
    # A local submit admits a plan as the deployment does: its media and webhook URLs against the same hosts.
    "VIDEO_PIPELINES_ALLOWED_HOSTS",
    "VIDEO_PIPELINES_DATABASE_URL",
    "VIDEO_PIPELINES_SECRET_KEY",
    "VIDEO_PIPELINES_STORAGE_URL",
    # The Celery launcher's settings: a client that cancels a run revokes its task on the broker.
    "VIDEO_PIPELINES_BROKER_URL",
    "VIDEO_PIPELINES_RESULT_BACKEND",
    "VIDEO_PIPELINES_QUEUE",
)


def _has_dagster_tables(database_url: str) -> bool:
    """Whether `database_url` was made from the template (`deployment_database`) or migrated before."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(database_url)) as db, db.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.runs') IS NOT NULL")
        return bool(cursor.fetchone()[0])


@dataclass
class DagsterDeployment:
    home: Path
    env: dict[str, str]
    port: int
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def graphql_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(self.graphql_url, json={"query": query, "variables": variables or {}}, timeout=60)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def start(self, name: str, command: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str) -> None:
        stop_process_group(self.processes.pop(name))

    def stop_all(self) -> None:
        """Every process started, at once: their code servers' SIGTERM grace runs out together."""
        stop_process_groups(list(self.processes.values()))
        self.processes.clear()

    @contextmanager
    def client(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[client_api.Deployment]:
        """The client side, in the test process, pointed at this deployment's instance and database."""
        for name in CLIENT_ENV:
            if name in self.env:
                monkeypatch.setenv(name, self.env[name])
        with client_api.deployment() as target:
            yield target

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n" + log.read_text(errors="replace")[-4000:] for log in sorted(self.logs.glob("*.log"))
        )

    def next_ticks(
        self, instance: dg.DagsterInstance, sensors: tuple[str, ...] = (*WEBHOOK_SENSORS, "webhook_deliveries")
    ) -> None:
        """Until each of `sensors` has ended a tick begun from now on: what they would do again, they have done."""
        since, deadline = time.time(), time.monotonic() + 60
        while True:
            ended = {
                state.name
                for state in instance.all_instigator_state()
                if state.name in sensors
                and any(
                    tick.status != TickStatus.STARTED
                    for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
                )
            }
            if ended >= set(sensors):
                return
            assert time.monotonic() < deadline, f"no new tick of {sorted(set(sensors) - ended)}\n{self.log_tail()}"
            time.sleep(0.2)

    def wait_for_daemon(self, timeout: float = 180) -> None:
        """Until the daemon has written its first heartbeats: its sensors and run queue are looping (read as
        `submit` and `/health` read them)."""
        deadline = time.monotonic() + timeout
        with SubmissionStore(self.env["VIDEO_PIPELINES_DATABASE_URL"]) as store:
            while "SENSOR" not in (read_heartbeats(self.home, store) or {}):
                assert self.processes["daemon"].poll() is None, f"the daemon exited\n{self.log_tail()}"
                assert time.monotonic() < deadline, f"the daemon did not beat in {timeout}s\n{self.log_tail()}"
                time.sleep(0.5)

    def wait_for_webserver(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes["webserver"]
            assert process.poll() is None, f"dagster-webserver exited\n{self.log_tail()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/server_info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"dagster-webserver did not answer in {timeout}s\n{self.log_tail()}")


def _migrate_dagster(env: dict[str, str]) -> None:
    """Create Dagster's tables in the database of `env` (`dagster instance migrate`: 10-40 s on 2 cores)."""
    subprocess.run(["dagster", "instance", "migrate"], env=env, check=True, capture_output=True, timeout=300)


@functools.cache
def _dagster_template() -> str:
    """A database with Dagster's tables, migrated once per Dagster version and cloned by every deployment.

    Cloning (CREATE DATABASE ... TEMPLATE) takes well under a second where migrating takes 10-40 s. The
    first session (or xdist worker) to need it builds it under an advisory lock and renames it into place
    only when it is whole; nobody connects to it afterwards, as cloning requires.
    """
    name = f"vp_template_dagster_{dg.__version__.replace('.', '_')}"
    building = f"{name}_building"
    admin = admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
                cursor.execute(f'CREATE DATABASE "{building}"')
                with tempfile.TemporaryDirectory(prefix="vp-template-") as home:
                    (Path(home) / "dagster.yaml").write_text(render_instance_yaml(postgres=True))
                    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{building}"
                    _migrate_dagster({**os.environ, "DAGSTER_HOME": home, "VIDEO_PIPELINES_DATABASE_URL": url})
                cursor.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
                cursor.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
    finally:
        admin.close()
    return name


@contextmanager
def deployment_database() -> Iterator[str]:
    """A new PostgreSQL database that already has Dagster's tables, dropped afterwards."""
    with fresh_database(template=_dagster_template()) as url:
        yield url


@contextmanager
def dagster_deployment(
    tmp_path: Path,
    database_url: str,
    *,
    daemon: bool = True,
    extra_env: dict[str, str] | None = None,
    celery: bool = False,
    plain_daemon: bool = False,
    webserver: bool = True,
) -> Iterator[DagsterDeployment]:
    """The production instance (PostgreSQL) with a webserver and, optionally, the daemon.

    `webserver=False` for tests that neither ask GraphQL nor open the UI: a webserver and its code server cost
    ~6 CPU-s to start, for nothing there. Then the deployment is ready once the daemon beats.

    The daemon is `video-pipelines daemon` (Dagster's, with faster loops); `plain_daemon`
    starts Dagster's own `dagster-daemon run` instead, which must keep working as well.

    With `celery`, runs go to warm workers through $VIDEO_PIPELINES_BROKER_URL (in `extra_env`);
    the test starts the workers (tests/workers.py). Without it, Dagster's default launcher.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(render_instance_yaml(postgres=True, celery=celery))
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "VIDEO_PIPELINES_DATABASE_URL": database_url,
        "VIDEO_PIPELINES_STORAGE_URL": (tmp_path / "artifacts").as_uri(),
        **(extra_env or {}),
    }
    deployment = DagsterDeployment(home=home, env=env, port=free_port(), logs=logs)
    if not _has_dagster_tables(database_url):
        # Create them once, before two processes race to create them in a new database.
        _migrate_dagster(env)
    if webserver:
        deployment.start(
            "webserver",
            ["dagster-webserver", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(deployment.port)],
        )
    if daemon:
        command = ["dagster-daemon", "run"] if plain_daemon else ["video-pipelines", "daemon"]
        deployment.start("daemon", [*command, "-w", str(WORKSPACE)])
    try:
        if webserver:
            deployment.wait_for_webserver()
        elif daemon:
            deployment.wait_for_daemon()
        yield deployment
    finally:
        deployment.stop_all()
