"""End to end: canceling an execution cancels the provider predictions its head starts began."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from video_pipelines.doors import client

from ..dagster.test_remote_overlap import THREE_AND_A_MERGE, TimedReplicate, replicate  # noqa: F401  (a fixture)
from ..processes import dagster_deployment, deployment_database
from ..unit.test_providers_replicate_fal import TOKEN


@pytest.mark.postgres
def test_e2e_canceling_an_execution_cancels_the_predictions_started_ahead(
    tmp_path: Path,
    replicate: TimedReplicate,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replicate.seconds = 600  # they end only when canceled
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-head-starts",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }
    with (
        deployment_database() as url,
        dagster_deployment(tmp_path, url, extra_env=env, webserver=False) as deployment,
        deployment.client(monkeypatch) as target,
    ):
        execution_id = client.submit(THREE_AND_A_MERGE, target=target)
        deadline = time.monotonic() + 90
        while len(replicate.jobs) < 3:
            assert time.monotonic() < deadline, deployment.log_tail()
            time.sleep(0.2)
        client.cancel(execution_id, target=target)
        final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "canceled"
    # The run parks them: canceled with the execution, at once or by the daemon's provider_waits within a tick.
    deadline = time.monotonic() + 10
    while not all(job.canceled for job in replicate.jobs.values()):
        assert time.monotonic() < deadline, "a prediction started ahead was left running"
        time.sleep(0.1)
    assert len(replicate.jobs) == 3
