"""End to end: runs in warm `video-pipelines worker` processes through VideoCeleryRunLauncher.

One deployment for the module: a real dagster-daemon and webserver on PostgreSQL, Redis as
broker and result backend, two real workers (concurrency 1 each), a local Replicate-protocol
server whose predictions never finish unless canceled, and a webhook receiver.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from video_pipelines import client

from .conftest import fresh_database
from .processes import DagsterDeployment, dagster_deployment
from .receiver import WebhookReceiver, running_receiver
from .test_providers_replicate_fal import TOKEN, FakeReplicate
from .workers import broker_env, start_worker, wait_for_workers

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = "sk-workers-e2e-41c7"


def local_plan(index: int, priority: str | None = None) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "jobs": [
            {"id": "a", "type": "generateVideo", "params": {"prompt": f"clip {index}", "duration": 1, "resolution": 64}}
        ]
    }
    if priority:
        plan["priority"] = priority
    return plan


HELD_PLAN = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}}]}


@pytest.fixture(scope="module")
def replicate(clip: bytes) -> Iterator[FakeReplicate]:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, outcome="never")
    api.start()
    yield api
    api.stop()


receiver = pytest.fixture(scope="module", name="receiver")(running_receiver)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, replicate: FakeReplicate) -> Iterator[DagsterDeployment]:
    env = {
        **broker_env(),
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-workers",
        "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS": "1,1,1",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }
    tmp = tmp_path_factory.mktemp("e2e_workers")
    with fresh_database() as url, dagster_deployment(tmp, url, extra_env=env, celery=True) as deployment:
        nodes = [start_worker(deployment, "w1"), start_worker(deployment, "w2")]
        wait_for_workers(deployment, nodes)
        yield deployment


@pytest.fixture
def target(deployment: DagsterDeployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    with deployment.client(monkeypatch) as target:
        yield target


def wait_until(predicate: Any, timeout: float, what: str, deployment: DagsterDeployment) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{deployment.log_tail()}"
        time.sleep(0.2)


def test_eight_executions_complete_on_two_workers(deployment: DagsterDeployment, target: client.Deployment) -> None:
    ids = [client.submit(local_plan(i), target=target) for i in range(8)]
    finals = [client.wait(execution_id, timeout=120, target=target) for execution_id in ids]
    assert [final["status"] for final in finals] == ["completed"] * 8, deployment.log_tail()
    workers = {final["worker"].split(" ")[0] for final in finals}
    assert {worker.split("-")[0] for worker in workers} == {"w1", "w2"}, workers
    assert all(" pid " in final["worker"] for final in finals)


def start_held(
    target: client.Deployment, replicate: FakeReplicate, path: str, receiver: WebhookReceiver
) -> tuple[str, str]:
    """Submit a plan whose Replicate prediction never finishes; returns (execution id, its worker tag) once it runs."""
    before = set(replicate.jobs)
    execution_id = client.submit(HELD_PLAN, webhook_url=receiver.url(path), webhook_secret=SECRET, target=target)
    deadline = time.monotonic() + 90
    while not set(replicate.jobs) - before or client.status(execution_id, target=target)["worker"] is None:
        assert time.monotonic() < deadline, (
            f"the held execution never reached its worker: {client.status(execution_id, target=target)}, "
            f"jobs {list(replicate.jobs)}"
        )
        time.sleep(0.2)
    return execution_id, client.status(execution_id, target=target)["worker"]


def child_pid(worker: str) -> int:
    return int(worker.rsplit(" pid ", 1)[1])


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_cancel_ends_canceled_and_the_worker_stays_warm(
    deployment: DagsterDeployment, target: client.Deployment, replicate: FakeReplicate, receiver: WebhookReceiver
) -> None:
    before = set(replicate.jobs)
    execution_id, worker = start_held(target, replicate, "/cancel", receiver)
    [job_id] = set(replicate.jobs) - before
    pid = child_pid(worker)
    worker_pid = parent_of(pid)
    client.cancel(execution_id, target=target)
    final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "canceled", (final, deployment.log_tail())
    [request] = receiver.wait_for("/cancel", 1)
    payload = json.loads(request.body)
    assert payload["status"] == "canceled"
    assert replicate.jobs[job_id].canceled, "the Replicate prediction was left running"
    # SIGINT interrupted the run, not the process: the same warm child is still there, in the same worker.
    assert parent_of(pid) == worker_pid
    again = client.wait(client.submit(local_plan(100), target=target), timeout=60, target=target)
    assert again["status"] == "completed"


def test_sigkilled_worker_fails_its_run_naming_it_and_the_other_goes_on(
    deployment: DagsterDeployment, target: client.Deployment, replicate: FakeReplicate, receiver: WebhookReceiver
) -> None:
    execution_id, worker = start_held(target, replicate, "/killed", receiver)
    node = worker.split(" ")[0]
    name = next(name for name in deployment.processes if node.startswith(f"{name}-"))
    process = deployment.processes.pop(name)
    killed_at = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    final = client.wait(execution_id, timeout=90, target=target)
    took = time.monotonic() - killed_at
    assert final["status"] == "failed", (final, deployment.log_tail())
    assert took <= 60, f"the dead worker's run was failed only after {took:.0f} s"
    assert node in final["error"] and "is gone" in final["error"], final["error"]
    assert not os.path.exists(f"/proc/{child_pid(worker)}"), "the worker's child outlived it"
    # The other worker goes on.
    assert (
        client.wait(client.submit(local_plan(200), target=target), timeout=60, target=target)["status"] == "completed"
    )
    [request] = receiver.wait_for("/killed", 1)
    sent = json.loads(request.body)
    assert sent["status"] == "failed" and node in sent["error"]
    time.sleep(7)  # the webhook sensors tick again: still one webhook
    assert len(receiver.received("/killed")) == 1


def test_high_priority_submission_starts_before_earlier_low_ones(
    deployment: DagsterDeployment, target: client.Deployment, replicate: FakeReplicate, receiver: WebhookReceiver
) -> None:
    # One worker of concurrency 1 is left: hold it, queue two low runs in the broker, then a high one.
    blocker, _worker = start_held(target, replicate, "/blocker", receiver)
    low = [client.submit(local_plan(300 + i, "low"), target=target) for i in range(2)]
    high: list[str] = []

    def in_broker(ids: list[str]) -> bool:
        """Every run was dequeued from Dagster's run queue and sent to the broker (STARTING), none taken yet."""
        run_ids = [client.status(i, target=target)["runId"] for i in ids]
        runs = [target.instance.get_run_by_id(run_id) if run_id else None for run_id in run_ids]
        return all(run is not None and run.status == dg.DagsterRunStatus.STARTING for run in runs)

    wait_until(lambda: in_broker(low), 60, "the low runs were sent to the broker", deployment)
    high.append(client.submit(local_plan(400, "high"), target=target))
    wait_until(lambda: in_broker(high), 60, "the high run was sent to the broker", deployment)
    assert in_broker(low), "a low run left the broker while the only worker was busy"
    client.cancel(blocker, target=target)
    finals = {i: client.wait(i, timeout=90, target=target) for i in [*low, *high]}
    assert all(final["status"] == "completed" for final in finals.values()), finals
    starts = {i: target.instance.get_run_record_by_id(final["runId"]).start_time for i, final in finals.items()}  # type: ignore[union-attr]
    assert starts[high[0]] < min(starts[i] for i in low), starts
