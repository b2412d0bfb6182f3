"""Failing infrastructure, each with real processes (issue 22): nothing lost, nothing doubled.

Each test runs a burst of executions (half of them a remote generation on a Replicate-protocol
server that counts its creates, every one with a webhook to a real receiver) on a deployment of
real processes (daemon, webserver, two warm Celery workers, and the API where it is what is
tested), breaks one piece of infrastructure mid-burst and brings it back:

1. the broker, a Redis the test starts without persistence, SIGKILLed and restarted;
2. PostgreSQL, a private cluster the test starts, restarted (`pg_ctl restart -m fast`);
3. a worker stopped with SIGTERM while it runs a run (Celery's warm shutdown);
4. the API SIGKILLed after PostgreSQL wrote a submission and before the API could answer.

Then every execution must end `completed`, every webhook arrive exactly once and every provider
job be created once. Each test prints what it measured (time to recover, executions lost,
webhooks doubled, creates doubled), so they show in `pytest -s` and CI's log.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from video_pipelines.doors import client
from video_pipelines.doors.api_client import ApiClient
from video_pipelines.plan.overrides import SubmitOptions

from ..api_process import api_process
from ..conftest import free_port
from ..dagster.test_remote_overlap import TimedReplicate
from ..processes import DagsterDeployment, dagster_deployment
from ..receiver import WebhookReceiver, running_receiver
from ..unit.test_providers_replicate_fal import TOKEN
from ..workers import broker_env, start_worker, wait_for_workers
from .test_api import create_key

pytestmark = pytest.mark.postgres

SECRET = "sk-faults-e2e-7c21"
REMOTE_SECONDS = 5.0  # each remote prediction: long enough to be in flight when the fault hits
BURST = 6
RECOVERY_TIMEOUT = 180.0  # generous: other suites share this 2-core machine


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, deployment: DagsterDeployment) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{deployment.log_tail()}"
        time.sleep(0.2)


# --- private infrastructure the tests start and break ---------------------------------------------


@dataclass
class PrivateRedis:
    """A `redis-server` on a free port with no persistence: a SIGKILL loses every message and task state."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout != b"PONG\n":
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin"
    return found[-1]


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of this test (initdb in a temporary folder, trust auth, a free port).

    Run as the `postgres` user when the tests run as root (initdb refuses root). Every session
    commits without waiting for a synchronous standby (`synchronous_commit = local`) but the
    `api` role's (see `catch_commits`).
    """

    data: Path
    port: int = field(default_factory=free_port)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.data}'\n"
                "fsync = off\nsynchronous_commit = local\nmax_connections = 200\n"
            )

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "start")

    def restart(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-m", "fast",
                  "restart")  # fmt: skip

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "immediate", "stop")

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres", user: str = "postgres") -> list[tuple[Any, ...]]:
        connection = psycopg2.connect(self.url(database, user), connect_timeout=10)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="vp-pg-"))
    os.chmod(folder, 0o755)
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(data, postgres.pw_uid, postgres.pw_gid)
    cluster = PrivateCluster(data)
    cluster.init()
    cluster.start()
    try:
        cluster.execute("CREATE DATABASE video")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


# --- the burst and what it must end with ----------------------------------------------------------


def plan_of(label: str, index: int) -> dict[str, Any]:
    """Even indexes: a remote generation (its prompt names it, so the server counts its creates); odd: local."""
    if index % 2 == 0:
        params: dict[str, Any] = {"prompt": f"{label} remote {index}", "provider": "replicate"}
    else:
        params = {"prompt": f"{label} local {index}", "duration": 1, "resolution": 64}
    return {"jobs": [{"id": "scene", "type": "generateVideo", "params": params}]}


@dataclass
class Burst:
    label: str
    paths: dict[str, str] = field(default_factory=dict)  # execution id -> the receiver path of its webhook

    def submit(self, index: int, submit: Callable[[dict[str, Any], str], str], receiver: WebhookReceiver) -> str:
        path = f"/{self.label}/{index}"
        execution_id = submit(plan_of(self.label, index), receiver.url(path))
        self.paths[execution_id] = path
        return execution_id

    def remote_prompts(self) -> list[str]:
        return [plan_of(self.label, i)["jobs"][0]["params"]["prompt"] for i in range(0, BURST, 2)]


def local_submitter(target: client.Deployment) -> Callable[[dict[str, Any], str], str]:
    def submit(plan: dict[str, Any], webhook_url: str) -> str:
        return client.submit(plan, SubmitOptions(webhook_url=webhook_url, webhook_secret=SECRET), target=target)

    return submit


def failures(deployment: DagsterDeployment) -> list[str]:
    """The lines of every log that say what failed (the tails `log_tail` shows are often after them)."""
    return [
        f"{log.name}: {line[:3000]}"
        for log in sorted(deployment.logs.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "STEP_FAILURE" in line or "RUN_FAILURE" in line or "Error" in line
    ][-40:]


def stuck(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status.get(key) for key in ("executionId", "status", "runId", "attempts", "error", "worker")}


def finish(
    fault: str,
    burst: Burst,
    *,
    recovered_from: float,
    deployment: DagsterDeployment,
    replicate: TimedReplicate,
    receiver: WebhookReceiver,
    read_status: Callable[[str], dict[str, Any]],
    deliveries: Callable[[str], list[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Wait for every execution to end; check completed, webhooks once, creates once; print the measurements."""
    finals: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while len(finals) < len(burst.paths):
        for execution_id in burst.paths.keys() - finals.keys():
            current = read_status(execution_id)
            if current["status"] in ("completed", "failed", "canceled"):
                finals[execution_id] = current
        assert time.monotonic() < deadline, (
            f"{len(burst.paths) - len(finals)} executions still running {RECOVERY_TIMEOUT} s after the {fault}: "
            f"{[stuck(read_status(i)) for i in burst.paths.keys() - finals.keys()]}\n{deployment.log_tail()}"
        )
        time.sleep(0.25)
    recovered = time.monotonic() - recovered_from
    lost = [i for i, final in finals.items() if final["status"] != "completed"]
    assert not lost, "\n".join(
        [*(f"{i} {finals[i]['status']}: {finals[i].get('error')}" for i in lost), *failures(deployment)]
    )
    for path in burst.paths.values():
        receiver.wait_for(path, 1, timeout=60)
    # The outbox is what the webhook sensor sends from: one delivery per execution, delivered, nothing left to send.
    for execution_id in burst.paths:

        def recorded(execution_id: str = execution_id) -> bool:
            return all(delivery["state"] != "pending" for delivery in deliveries(execution_id))

        wait_until(recorded, 60, f"the webhook of {execution_id} recorded as delivered", deployment)
        assert [d["state"] for d in deliveries(execution_id)] == ["delivered"], deliveries(execution_id)
    doubled_webhooks = sum(len(receiver.received(path)) - 1 for path in burst.paths.values())
    for execution_id, path in burst.paths.items():
        [request] = receiver.received(path)
        payload = json.loads(request.body)
        assert (payload["executionId"], payload["status"]) == (execution_id, "completed"), payload
    creates = list(replicate.prompts.values())
    doubled_creates = sum(creates.count(prompt) - 1 for prompt in set(creates))
    assert sorted(creates) == sorted(burst.remote_prompts()), creates
    attempts = sum(len(final["attempts"]) for final in finals.values())
    print(
        f"\n[{fault}] {len(finals)} executions: recovered {recovered:.1f} s after the fault ended; "
        f"executions lost: {len(lost)}, webhooks doubled: {doubled_webhooks}, provider creates doubled: "
        f"{doubled_creates}, runs: {attempts} (resumed: {attempts - len(finals)})"
    )
    return finals


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def replicate(clip: bytes) -> Iterator[TimedReplicate]:
    api = TimedReplicate(auth=f"Bearer {TOKEN}", output=clip, seconds=REMOTE_SECONDS)
    api.start()
    yield api
    api.stop()


receiver = pytest.fixture(name="receiver")(running_receiver)


def deployment_env(replicate: TimedReplicate, broker: str, *, parking: bool = True) -> dict[str, str]:
    return {
        "VIDEO_PIPELINES_PARKING": "on" if parking else "off",
        **broker_env(broker),
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-faults",
        "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS": "1,1,1,1,1",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }


@contextmanager
def deployment_with_workers(tmp_path: Path, database_url: str, env: dict[str, str]) -> Iterator[DagsterDeployment]:
    with dagster_deployment(tmp_path, database_url, extra_env=env, celery=True, webserver=False) as deployment:
        wait_for_workers(deployment, [start_worker(deployment, "w1"), start_worker(deployment, "w2")])
        yield deployment


def in_flight(replicate: TimedReplicate, prompts: list[str]) -> Callable[[], bool]:
    """Mid-burst: a remote prediction of the burst is being made."""
    return lambda: bool(set(prompts) & set(replicate.prompts.values()))


def burst_through_fault(
    fault_name: str,
    fault: Callable[[], None],
    deployment: DagsterDeployment,
    target: client.Deployment,
    replicate: TimedReplicate,
    receiver: WebhookReceiver,
) -> None:
    """Half a burst submitted; once one of its predictions is in flight, the other half, and at once `fault` (the
    sensor launches submissions within a tick: only those just made are surely still pending); then every
    execution checked."""
    burst = Burst(fault_name.split()[0].lower())
    for index in range(BURST // 2):
        burst.submit(index, local_submitter(target), receiver)
    wait_until(in_flight(replicate, burst.remote_prompts()), 120, "a prediction of the burst in flight", deployment)
    for index in range(BURST // 2, BURST):
        burst.submit(index, local_submitter(target), receiver)
    fault()
    finish(
        fault_name, burst, recovered_from=time.monotonic(), deployment=deployment, replicate=replicate,
        receiver=receiver, read_status=lambda i: client.status(i, target=target),
        deliveries=lambda i: client.deliveries(i, target=target),
    )  # fmt: skip


# --- the tests ------------------------------------------------------------------------------------


@dataclass
class OnPrivateRedis:
    redis: PrivateRedis
    deployment: DagsterDeployment
    target: client.Deployment


@contextmanager
def private_redis_deployment(
    tmp_path: Path, postgres_url: str, replicate: TimedReplicate, monkeypatch: pytest.MonkeyPatch, *, parking: bool
) -> Iterator[OnPrivateRedis]:
    """Two warm workers whose broker is a Redis of the test's own (which it may kill), the client pointed at them."""
    with (
        private_redis() as redis,
        deployment_with_workers(
            tmp_path, postgres_url, deployment_env(replicate, redis.url, parking=parking)
        ) as deployment,
        deployment.client(monkeypatch) as target,
    ):
        yield OnPrivateRedis(redis, deployment, target)


@pytest.fixture
def on_private_redis(
    tmp_path: Path, postgres_url: str, replicate: TimedReplicate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OnPrivateRedis]:
    with private_redis_deployment(tmp_path, postgres_url, replicate, monkeypatch, parking=True) as deployment:
        yield deployment


def test_broker_sigkilled_and_restarted_mid_burst(
    on_private_redis: OnPrivateRedis, replicate: TimedReplicate, receiver: WebhookReceiver
) -> None:
    redis, deployment, target = on_private_redis.redis, on_private_redis.deployment, on_private_redis.target

    def kill_and_restart() -> None:
        redis.kill()
        redis.start()

    burst_through_fault("broker SIGKILLed", kill_and_restart, deployment, target, replicate, receiver)


def test_postgres_restarted_mid_burst(
    tmp_path: Path, replicate: TimedReplicate, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        private_cluster() as cluster,
        private_redis() as redis,
        deployment_with_workers(tmp_path, cluster.url("video"), deployment_env(replicate, redis.url)) as deployment,
        deployment.client(monkeypatch) as target,
    ):
        burst_through_fault("PostgreSQL restarted", cluster.restart, deployment, target, replicate, receiver)


def test_worker_sigterm_mid_run(
    tmp_path: Path,
    postgres_url: str,
    replicate: TimedReplicate,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Parking off: the remote run holds its worker on the prediction, so the SIGTERM finds it running.
    with private_redis_deployment(tmp_path, postgres_url, replicate, monkeypatch, parking=False) as held:
        sigterm_mid_run(held.deployment, held.target, replicate, receiver)


def sigterm_mid_run(
    deployment: DagsterDeployment, target: client.Deployment, replicate: TimedReplicate, receiver: WebhookReceiver
) -> None:
    burst = Burst("sigterm")
    ids = [burst.submit(i, local_submitter(target), receiver) for i in range(BURST)]
    remote = ids[0]

    def remote_running() -> bool:
        status = client.status(remote, target=target)
        return status["worker"] is not None and bool(replicate.prompts)

    wait_until(remote_running, 120, "the first remote execution running on a worker", deployment)
    node = client.status(remote, target=target)["worker"].split(" ")[0]
    name = next(name for name in deployment.processes if node.startswith(f"{name}-"))
    process = deployment.processes.pop(name)
    os.kill(process.pid, signal.SIGTERM)  # the worker's main process, as Kubernetes or `docker stop` do
    stopped_at = time.monotonic()
    assert process.wait(timeout=RECOVERY_TIMEOUT) == 0, deployment.log_tail()
    took_to_exit = time.monotonic() - stopped_at
    finals = finish(
        "worker SIGTERM", burst, recovered_from=stopped_at, deployment=deployment, replicate=replicate,
        receiver=receiver, read_status=lambda i: client.status(i, target=target),
        deliveries=lambda i: client.deliveries(i, target=target),
    )  # fmt: skip
    attempts = finals[remote]["attempts"]
    # Warm shutdown: the run it held finished there (one attempt), or was handed back and resumed once.
    assert [a["status"] for a in attempts] in (["completed"], ["failed", "completed"]), attempts
    print(f"[worker SIGTERM] the worker exited {took_to_exit:.1f} s after SIGTERM; its run: {attempts}")


def hold_commits(cluster: PrivateCluster) -> None:
    """From now on a commit of the `api` role waits for a synchronous standby that never comes.

    The commit is written (durable, in PostgreSQL's log) but neither visible nor answered until
    `release_commits`: a process killed meanwhile dies after its write and before its answer.
    Returns once a probe commit of the role really waits (the setting is reloaded asynchronously);
    the probe is then canceled, which ends its wait (a cancel is the one way to, besides the standby).
    """
    cluster.execute("ALTER SYSTEM SET synchronous_standby_names = 'never_there'")
    cluster.execute("SELECT pg_reload_conf()")
    probe = psycopg2.connect(cluster.url("video", "api"), connect_timeout=10)
    probe.autocommit = True
    pid = probe.get_backend_pid()
    waits = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND wait_event = 'SyncRep'"
    try:
        while True:
            insert = threading.Thread(target=lambda: probe.cursor().execute("INSERT INTO fault_probe VALUES (1)"))
            insert.start()
            while insert.is_alive():  # it ends by itself while the setting is not in force yet
                if cluster.execute(waits, "video")[0][0] == 1:
                    cluster.execute(f"SELECT pg_cancel_backend({pid})")
                    insert.join()
                    return
                time.sleep(0.05)
            insert.join()
    finally:
        probe.close()


def release_commits(cluster: PrivateCluster) -> None:
    cluster.execute("ALTER SYSTEM RESET synchronous_standby_names")
    cluster.execute("SELECT pg_reload_conf()")


def api_submitter(api: ApiClient, keys: dict[str, str]) -> Callable[[dict[str, Any], str], str]:
    """Submits over HTTP with an Idempotency-Key of our own per webhook path (`keys[path]`), as a caller would."""

    def submit(plan: dict[str, Any], webhook_url: str) -> str:
        key = keys.setdefault(webhook_url, f"order-{uuid.uuid4().hex}")
        return api.submit(plan, SubmitOptions(webhook_url=webhook_url, webhook_secret=SECRET, idempotency_key=key))

    return submit


def test_api_killed_mid_request(
    tmp_path: Path, replicate: TimedReplicate, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API is SIGKILLed after PostgreSQL wrote the submission and before the API answered; the client's
    own retry (the same Idempotency-Key) reaches the restarted API and gets the same execution."""
    with (
        private_cluster() as cluster,
        private_redis() as redis,
        deployment_with_workers(tmp_path, cluster.url("video"), deployment_env(replicate, redis.url)) as deployment,
    ):
        # The API connects as its own role, whose commits alone `hold_commits` holds.
        cluster.execute("CREATE ROLE api SUPERUSER LOGIN")
        cluster.execute("ALTER ROLE api SET synchronous_commit = on")
        cluster.execute("CREATE TABLE fault_probe (x int)", "video")
        key = create_key(deployment, "faults", "acme")
        api_env = {**deployment.env, "VIDEO_PIPELINES_DATABASE_URL": cluster.url("video", "api")}
        port = free_port()
        burst, keys = Burst("api"), dict[str, str]()
        caught: dict[str, Any] = {}
        # Retries enough to outlast the API's restart (connection refused is always retried).
        with ApiClient(f"http://127.0.0.1:{port}", key, retries=12, backoff=0.25) as api:
            submit = api_submitter(api, keys)
            with api_process(env=api_env, logs=deployment.logs, port=port) as server:
                for index in range(BURST - 1):
                    burst.submit(index, submit, receiver)
                # The key's last use is fresh now: the caught request writes nothing but its submission.
                api.status(next(iter(burst.paths)))
                hold_commits(cluster)

                def caught_submit() -> None:
                    try:
                        caught["id"] = burst.submit(BURST - 1, submit, receiver)
                    except Exception as exc:  # the assertion below names it
                        caught["error"] = exc

                thread = threading.Thread(target=caught_submit)
                thread.start()
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'api' AND wait_event = 'SyncRep'"
                wait_until(lambda: cluster.execute(waiting)[0][0] == 1, 60, "the submission's commit", deployment)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
                killed_at = time.monotonic()
            release_commits(cluster)
            [caught_key] = [k for path, k in keys.items() if path.endswith(f"/{BURST - 1}")]
            stored = f"SELECT execution_id FROM video_pipelines_submissions WHERE idempotency_key = '{caught_key}'"
            # The write the API died after: the submission is there before any retry could reach an API.
            wait_until(lambda: len(cluster.execute(stored, "video")) == 1, 60, "the caught submission", deployment)
            [(execution_id,)] = cluster.execute(stored, "video")
            assert thread.is_alive() and "id" not in caught, caught  # the client got no answer, it retries
            with api_process(env=api_env, logs=deployment.logs, port=port):
                thread.join(timeout=RECOVERY_TIMEOUT)
                answered = time.monotonic() - killed_at
                assert caught.get("id") == execution_id, caught
                assert cluster.execute(stored, "video") == [(execution_id,)]  # one execution for the key
                finish(
                    "API SIGKILLed mid-request", burst, recovered_from=killed_at, deployment=deployment,
                    replicate=replicate, receiver=receiver, read_status=api.status, deliveries=api.deliveries,
                )  # fmt: skip
                print(f"[API SIGKILLed mid-request] the client's retry got the same execution {answered:.1f} s after")
