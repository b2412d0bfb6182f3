"""End to end: canceling an execution cancels its remote provider job (real daemon, a local Replicate)."""

from __future__ import annotations

import time

import pytest

from video_pipelines.doors import client

from ..processes import DagsterDeployment
from ..unit.test_providers_replicate_fal import FakeReplicate

pytestmark = pytest.mark.postgres


def test_cancel_cancels_the_provider_job(
    stalled_deployment: DagsterDeployment, stalled_replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}}]}
    with stalled_deployment.client(monkeypatch) as target:
        execution_id = client.submit(plan, target=target)
        deadline = time.monotonic() + 90
        while not stalled_replicate.jobs:
            assert time.monotonic() < deadline, stalled_deployment.log_tail()
            time.sleep(0.2)
        [job_id] = list(stalled_replicate.jobs)
        run = client.status(execution_id, target=target)
        assert target.instance.get_run_by_id(run["runId"]).tags["video/provider_job/gen"] == job_id  # type: ignore[union-attr]
        client.cancel(execution_id, target=target)
        final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "canceled"
    # At once where the canceling process has the provider's key, else by the daemon's provider_waits within a tick.
    deadline = time.monotonic() + 10
    while not stalled_replicate.jobs[job_id].canceled:
        assert time.monotonic() < deadline, "the Replicate prediction was left running"
        time.sleep(0.1)
    assert len(stalled_replicate.jobs) == 1  # never a second paid job
