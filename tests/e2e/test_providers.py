"""End to end: canceling an execution cancels its remote provider job (real daemon, a local Replicate)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from video_pipelines.doors import client

from ..conftest import fresh_database
from ..processes import DagsterDeployment, dagster_deployment
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicate(clip: bytes) -> Iterator[FakeReplicate]:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, outcome="never")
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def deployment(tmp_path: Path, replicate: FakeReplicate) -> Iterator[DagsterDeployment]:
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-providers",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }
    with fresh_database() as url, dagster_deployment(tmp_path, url, extra_env=env) as deployment:
        yield deployment


def test_cancel_cancels_the_provider_job(
    deployment: DagsterDeployment, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}}]}
    with deployment.client(monkeypatch) as target:
        execution_id = client.submit(plan, target=target)
        deadline = time.monotonic() + 90
        while not replicate.jobs:
            assert time.monotonic() < deadline, deployment.log_tail()
            time.sleep(0.2)
        [job_id] = list(replicate.jobs)
        run = client.status(execution_id, target=target)
        assert target.instance.get_run_by_id(run["runId"]).tags["video/provider_job/gen"] == job_id  # type: ignore[union-attr]
        client.cancel(execution_id, target=target)
        final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "canceled"
    assert replicate.jobs[job_id].canceled, "the Replicate prediction was left running"
    assert len(replicate.jobs) == 1  # never a second paid job
