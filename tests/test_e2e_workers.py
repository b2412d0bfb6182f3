"""End to end: runs in warm `video-pipelines worker` processes through VideoCeleryRunLauncher.

One deployment for the module: a real dagster-daemon and webserver on PostgreSQL, Redis as
broker and result backend, two real workers (concurrency 1 each), a local Replicate-protocol
server whose predictions never finish unless canceled, and a webhook receiver.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from video_pipelines import client

from .conftest import fresh_database
from .processes import DagsterDeployment, dagster_deployment
from .receiver import WebhookReceiver
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


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


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
