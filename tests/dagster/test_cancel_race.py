"""A cancel racing its execution's launch, or its run's end, on a real instance and a real submission store.

The plan sensor is driven directly (`evaluate_submissions`), and the run the daemon would create for
its run request is created and executed here, so each interleaving happens exactly, every time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines import executions
from video_pipelines.doors import client
from video_pipelines.errors import ExecutionConflict
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.sensors.plans import evaluate_submissions
from video_pipelines.webhooks import DeliveryOutbox

PLAN: dict[str, Any] = {
    "jobs": [{"id": "clip", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}],
    "webhook": {"url": "https://hooks.example.com/race"},
}


@pytest.fixture
def target(dagster_home: Path) -> Iterator[client.Deployment]:
    with client.deployment() as deployment:
        yield deployment


def run_as_the_daemon_would(target: client.Deployment, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run the daemon creates for a run request (its config, its tags and its run key), executed here."""
    tags = {**request.tags, "dagster/run_key": str(request.run_key)}
    return execute_plan_job().execute_in_process(
        run_config=request.run_config, instance=target.instance, tags=tags, raise_on_error=False
    )


def nodes_started(target: client.Deployment, run_id: str) -> list[str]:
    events = target.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return [str(r.event_log_entry.step_key) for r in events if str(r.event_log_entry.step_key).startswith("node")]


def test_a_cancel_racing_the_launch_is_obeyed_by_the_run(target: client.Deployment) -> None:
    """The sensor asked for the run, then the cancel came, then the daemon created the run: nothing runs."""
    execution_id = client.submit(PLAN, target=target)
    [request] = evaluate_submissions(target.store, target.instance).run_requests
    answer = client.cancel(execution_id, target=target)
    run = run_as_the_daemon_would(target, request)
    assert nodes_started(target, run.run_id) == [] and run.get_asset_materialization_events() == []
    assert run.dagster_run.status is dg.DagsterRunStatus.CANCELED
    status = client.status(execution_id, target=target)
    assert (status["status"], status["result"], status["jobs"]["clip"]["status"]) == ("canceled", None, "skipped")
    assert answer["status"] == "pending"  # not `canceled` while its run was on its way (it then ran nothing)
    tick = evaluate_submissions(target.store, target.instance)
    assert (tick.launched, tick.canceled, tick.run_requests) == ({execution_id: run.run_id}, {}, [])

    # A retry is a new attempt: that cancel does not concern it. Canceled in its turn as it launches, its run
    # runs nothing either; the next retry runs.
    assert client.retry(execution_id, target=target)["status"] == "pending"
    [retry] = evaluate_submissions(target.store, target.instance).run_requests
    assert client.cancel(execution_id, target=target)["status"] == "pending"
    retried = run_as_the_daemon_would(target, retry)
    assert retried.dagster_run.status is dg.DagsterRunStatus.CANCELED and nodes_started(target, retried.run_id) == []
    assert client.status(execution_id, target=target)["status"] == "canceled"
    assert client.retry(execution_id, target=target)["status"] == "pending"
    [again] = evaluate_submissions(target.store, target.instance).run_requests
    assert run_as_the_daemon_would(target, again).success
    assert client.status(execution_id, target=target)["status"] == "completed"


def test_a_cancel_after_the_last_node_leaves_the_execution_completed(target: client.Deployment) -> None:
    """The run ended as the cancel came: the terminate that raced its end left Dagster's run CANCELING."""
    execution_id = client.submit(PLAN, target=target)
    [request] = evaluate_submissions(target.store, target.instance).run_requests
    run = run_as_the_daemon_would(target, request)
    assert run.success
    # What a terminate that read the run as started writes after the run's end (the run goes back to CANCELING).
    target.instance.report_run_canceling(run.dagster_run)
    with pytest.raises(ExecutionConflict, match=f"execution {execution_id} is completed; only a pending or processing"):
        client.cancel(execution_id, target=target)
    answer = client.status(execution_id, target=target)
    assert (answer["status"], answer["progress"], answer["error"]) == ("completed", 100, None)
    assert answer["result"]["url"] == answer["jobs"]["clip"]["result"]["url"]

    records, outbox = DagsterRunRecords(target.instance), DeliveryOutbox(target.store)
    delivery = executions.enqueue_webhook(records, target.store, outbox, execution_id)
    assert delivery is not None and delivery.event == "completed"
    assert json.loads(delivery.body)["video"]["url"] == answer["result"]["url"]
    # Run monitoring ends the CANCELING run CANCELED later: the execution stays completed, with one webhook.
    target.instance.report_run_canceled(run.dagster_run)
    assert client.status(execution_id, target=target)["status"] == "completed"
    assert executions.enqueue_webhook(records, target.store, outbox, execution_id) == delivery
    assert [d.event for d in outbox.deliveries(execution_id)] == ["completed"]
