"""End to end: a plan's `timeoutSeconds` ends its run (Dagster's run monitoring, a real daemon) and cancels its provider job."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from video_pipelines.doors import client
from video_pipelines.plan.overrides import SubmitOptions

from ..conftest import fresh_database
from ..processes import DagsterDeployment, dagster_deployment
from ..receiver import WebhookReceiver, running_receiver
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate

receiver = pytest.fixture(name="receiver")(running_receiver)


@pytest.fixture
def replicate(clip: bytes) -> Iterator[FakeReplicate]:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, outcome="never")  # predictions that never finish
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def deployment(tmp_path: Path, replicate: FakeReplicate) -> Iterator[DagsterDeployment]:
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-deadlines",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }
    with fresh_database() as url, dagster_deployment(tmp_path, url, extra_env=env) as deployment:
        yield deployment


@pytest.mark.postgres
def test_a_deadline_ends_the_execution_failed_and_cancels_the_provider_job(
    deployment: DagsterDeployment, replicate: FakeReplicate, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}},
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
        ],
        "timeoutSeconds": 10,
    }
    with deployment.client(monkeypatch) as target:
        execution_id = client.submit(plan, SubmitOptions(webhook_url=receiver.url("/deadline")), target=target)
        wait_until = time.monotonic() + 90
        while not replicate.jobs:
            assert time.monotonic() < wait_until, deployment.log_tail()
            time.sleep(0.2)
        [job_id] = list(replicate.jobs)
        run_id = client.status(execution_id, target=target)["runId"]
        run = target.instance.get_run_by_id(run_id)
        assert run is not None and run.tags["dagster/max_runtime"] == "10"
        # Run monitoring looks every poll_interval_seconds (10 s in the production config): ended 10-20 s after start.
        final = client.wait(execution_id, timeout=90, target=target)
        ended = target.instance.get_run_record_by_id(run_id)
    assert final["status"] == "failed", final
    assert final["error"].startswith("deadline exceeded after 10 s"), final["error"]
    assert "canceled" not in final["error"]
    assert final["jobs"]["gen"]["status"] in ("failed", "skipped") and final["jobs"]["square"]["status"] == "skipped"
    # Run monitoring marks the run failed as soon as it has sent the interrupt, so the worker's cancel of the
    # prediction may reach the provider a moment after the status says failed: it gets a bounded while.
    cancel_by = time.monotonic() + 20
    while not replicate.jobs[job_id].canceled:
        assert time.monotonic() < cancel_by, f"the Replicate prediction was left running\n{deployment.log_tail()}"
        time.sleep(0.1)
    assert len(replicate.jobs) == 1
    assert ended is not None and ended.start_time is not None and ended.end_time is not None
    assert ended.end_time - ended.start_time >= 10
    [request] = receiver.wait_for("/deadline", 1, timeout=60)
    body = json.loads(request.body)
    assert body["status"] == "failed" and body["error"] == final["error"]
