"""End to end: a plan's `timeoutSeconds` ends its run (Dagster's run monitoring, a real daemon) and cancels its provider job."""

from __future__ import annotations

import json
import time

import pytest

from video_pipelines.doors import client
from video_pipelines.plan.overrides import SubmitOptions

from ..processes import DagsterDeployment
from ..receiver import WebhookReceiver, running_receiver
from ..unit.test_providers_replicate_fal import FakeReplicate

receiver = pytest.fixture(name="receiver")(running_receiver)


@pytest.mark.postgres
def test_a_deadline_ends_the_execution_failed_and_cancels_the_provider_job(
    stalled_deployment: DagsterDeployment,
    stalled_replicate: FakeReplicate,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}},
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
        ],
        "timeoutSeconds": 10,
    }
    with stalled_deployment.client(monkeypatch) as target:
        execution_id = client.submit(plan, SubmitOptions(webhook_url=receiver.url("/deadline")), target=target)
        wait_until = time.monotonic() + 90
        while not stalled_replicate.jobs:
            assert time.monotonic() < wait_until, stalled_deployment.log_tail()
            time.sleep(0.2)
        [job_id] = list(stalled_replicate.jobs)
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
    while not stalled_replicate.jobs[job_id].canceled:
        assert time.monotonic() < cancel_by, (
            f"the Replicate prediction was left running\n{stalled_deployment.log_tail()}"
        )
        time.sleep(0.1)
    assert len(stalled_replicate.jobs) == 1
    assert ended is not None and ended.start_time is not None and ended.end_time is not None
    assert ended.end_time - ended.start_time >= 10
    [request] = receiver.wait_for("/deadline", 1, timeout=60)
    body = json.loads(request.body)
    assert body["status"] == "failed" and body["error"] == final["error"]
