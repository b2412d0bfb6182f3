"""Sensors that explain themselves: descriptions in the UI, and tick logs as the UI reads them.

Each sensor is evaluated on a real SQLite instance with `build_sensor_context`; its tick log is
read back from the instance's compute log manager, where the daemon's ticks keep theirs and
the UI finds them (`get_instigation_log_records`). Webhooks go over TCP to a real receiver.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
from dagster._core.definitions.instigation_logger import get_instigation_log_records
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.sensor import execute_sensor_iteration
from standardwebhooks import Webhook

from video_pipelines.doors import cli, client
from video_pipelines.orchestration.definitions import build_definitions
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.sensors.plans import submitted_plans, webhook_deliveries, webhook_on_started
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.webhooks import RETRY_DELAYS_ENV

from ..receiver import WebhookReceiver, running_receiver
from .harness import run_plan_in_process

R = TypeVar("R")
REPO = Path(__file__).resolve().parents[2]
SECRET_ENV = "VIDEO_WEBHOOK_SECRET"
SECRET = "whk-sensor-logs-51c9"
CLIP = {"id": "clip", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}
PLAN: dict[str, Any] = {"jobs": [CLIP]}

receiver = pytest.fixture(name="receiver")(running_receiver)
# A tick log's key is its repository, sensor and second: each evaluation gets a repository name
# of its own, so two ticks within a second never share a log.
_TICKS = itertools.count(1)


@pytest.fixture
def target(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    for name in ("VIDEO_PIPELINES_API_URL", "VIDEO_PIPELINES_API_KEY", RETRY_DELAYS_ENV, SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    with client.deployment() as deployment:
        yield deployment


def evaluate(
    target: client.Deployment, name: str, sensor: Callable[[dg.SensorEvaluationContext], R]
) -> tuple[R, list[tuple[str, str]]]:
    """One tick of `sensor`, and its log as (level, message) lines, read back as the UI reads them."""
    instance = target.instance
    with dg.build_sensor_context(
        instance=instance,
        # With an instance ref and a repository and sensor name, the tick log is written to the
        # instance's compute log manager, as under the daemon.
        instance_ref=instance.get_ref(),
        repository_name=f"tick_{next(_TICKS)}",
        sensor_name=name,
        resources={"submissions": SubmissionStoreResource()},
    ) as context:
        result = sensor(context)
        log_key = context.log_key
    assert log_key is not None
    records = get_instigation_log_records(instance, log_key)
    return result, [(record["levelname"], record["dagster_meta"]["orig_message"]) for record in records]


def test_every_sensor_says_in_the_ui_what_it_does() -> None:
    sensors = build_definitions().get_repository_def().sensor_defs
    assert len(sensors) == 10
    for sensor in sensors:
        assert sensor.description, f"{sensor.name} has no description for the UI"
    by_name = {sensor.name: sensor for sensor in sensors}
    # The long-polling sensors say how long a tick looks and when the next one follows.
    for name in ("submitted_plans", "webhook_deliveries"):
        description = by_name[name].description or ""
        assert "up to 4 s" in description and "the next starts 1 s after this one started" in description, description


def test_the_plan_sensors_tick_log_says_what_it_launched_what_waits_and_what_was_rejected(
    target: client.Deployment,
) -> None:
    base = client.submit(PLAN, target=target)
    variant = client.submit(PLAN, SubmitOptions(base_execution_id=base), target=target)
    ghost = target.store.submit({**PLAN, "baseExecutionId": "exec_ghost"})[0].execution_id  # past the doors' check

    result, lines = evaluate(target, "submitted_plans", submitted_plans)

    assert isinstance(result, dg.SensorResult)
    assert [request.run_key for request in result.run_requests or []] == [base]
    assert ("INFO", f"{base}: launching a run of execute_plan") in lines
    assert ("INFO", f"{variant} waits: base execution {base} is pending") in lines
    refusal = "invalid plan: plan.baseExecutionId: base execution exec_ghost does not exist"
    assert ("WARNING", f"{ghost} rejected: {refusal}") in lines


def test_a_tick_without_runs_says_what_it_did_and_an_idle_one_says_so_briefly(target: client.Deployment) -> None:
    result, lines = evaluate(target, "submitted_plans", submitted_plans)
    assert isinstance(result, dg.SensorResult) and result.skip_reason is not None
    assert (result.skip_reason.skip_message, lines) == ("nothing submitted", [])
    base = client.submit(PLAN, target=target)
    variant = client.submit(PLAN, SubmitOptions(base_execution_id=base), target=target)  # waits for its base
    target.store.mark_rejected(base, "invalid plan: clip.params.prompt: required")
    result, lines = evaluate(target, "submitted_plans", submitted_plans)
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    assert result.skip_reason is not None
    assert (
        result.skip_reason.skip_message
        == f"rejected: {variant} (plan.baseExecutionId: base execution {base} was rejected: invalid plan: "
        "clip.params.prompt: required)"
    )
    [(level, line)] = lines
    assert level == "WARNING" and line.startswith(
        f"{variant} rejected: invalid plan: plan.baseExecutionId: base execution {base} was rejected"
    )


def test_a_direct_run_whose_secret_env_is_not_set_is_warned_and_its_webhook_fails_at_once(
    target: client.Deployment,
    receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Launchpad example of docs/ui-tour.md: a run launched directly, its secret named by secretEnv.
    plan = {"jobs": [CLIP], "webhook": {"url": receiver.url("/hook"), "secretEnv": SECRET_ENV}}
    run = run_plan_in_process(plan, target.instance)
    assert run.success
    execution_id = run.run_id

    # When the run starts: a warning in the tick log and on the run's own page.
    [record] = target.instance.get_records_for_run(execution_id, of_type=dg.DagsterEventType.RUN_START).records
    started = target.instance.get_run_by_id(execution_id)
    assert record.event_log_entry.dagster_event is not None and started is not None

    def on_started(context: dg.SensorEvaluationContext) -> None:
        with dg.build_run_status_sensor_context(
            sensor_name="webhook_on_started",
            dagster_event=record.event_log_entry.dagster_event,
            dagster_instance=target.instance,
            dagster_run=started,
            context=context,
            resources={"submissions": SubmissionStoreResource()},
        ) as run_context:
            webhook_on_started(run_context)

    _, lines = evaluate(target, "webhook_on_started", on_started)
    warnings = [line for level, line in lines if level == "WARNING"]
    assert len(warnings) == 1 and f"environment variable {SECRET_ENV}" in warnings[0], lines
    engine_events = [
        event.message
        for event in target.instance.all_logs(execution_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if SECRET_ENV in event.message
    ]
    assert len(engine_events) == 1 and "this run's webhooks will fail" in engine_events[0]

    # The delivery sensor finds the ended run: one attempt, failed at once, with why in its tick log.
    result, lines = evaluate(target, "webhook_deliveries", webhook_deliveries)
    webhook_id = f"msg_{execution_id}_completed"
    [(level, line)] = [(level, line) for level, line in lines if webhook_id in line]
    assert level == "WARNING"
    assert f"environment variable {SECRET_ENV} (the plan's webhook.secretEnv) is not set" in line
    assert "delivery failed for good" in line and f"video-pipelines deliveries redeliver {webhook_id}" in line
    assert result.skip_reason is not None
    assert result.skip_reason.skip_message == f"gave up on {webhook_id} after 1 attempt(s)"
    assert receiver.requests == []

    # `video-pipelines deliveries ID` shows it failed, with the reason, and nothing is retried.
    assert cli.main(["deliveries", execution_id]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["state"] == "failed" and shown["nextAttemptAt"] is None
    [attempt] = shown["attempts"]
    assert attempt["statusCode"] is None and f"environment variable {SECRET_ENV}" in attempt["error"]
    result, lines = evaluate(target, "webhook_deliveries", webhook_deliveries)
    assert result.skip_reason is not None and result.skip_reason.skip_message == "no webhook due"
    assert lines == [] and receiver.requests == []

    # Fixed, then redelivered: sent, signed with the secret, as the next attempt.
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert client.redeliver(webhook_id, target=target)["state"] == "pending"
    result, lines = evaluate(target, "webhook_deliveries", webhook_deliveries)
    assert lines == [("INFO", f"{webhook_id} ({execution_id}, completed) attempt 2: delivered (HTTP 200)")]
    assert result.skip_reason is not None and result.skip_reason.skip_message == f"delivered {webhook_id}"
    [request] = receiver.received("/hook")
    Webhook(SECRET.encode()).verify(request.body, request.headers)
    [shown] = client.deliveries(execution_id, target=target)
    assert shown["state"] == "delivered" and [a["number"] for a in shown["attempts"]] == [1, 2]


def test_the_daemons_tick_rows_say_what_each_tick_did(target: client.Deployment, receiver: WebhookReceiver) -> None:
    """One pass of Dagster's sensor daemon over the project's code location; the tick rows read as the UI reads them."""
    plan = {"jobs": [CLIP], "webhook": {"url": receiver.url("/hook"), "secretEnv": SECRET_ENV}}
    run = run_plan_in_process(plan, target.instance)  # ended; its webhook's secret is not set: given up at once
    # Stored past the doors (which refuse a missing base at once), as a base deleted after its submission is.
    ghost = target.store.submit({**PLAN, "baseExecutionId": "exec_ghost"})[0].execution_id
    where = PythonFileTarget(str(REPO / "definitions.py"), "defs", str(REPO), None)
    with create_test_daemon_workspace_context(where, target.instance) as workspace:
        list(execute_sensor_iteration(workspace, logging.getLogger("test_sensor_logs"), None, None))
    rows: dict[str, list[TickStatus | str | None]] = {}
    for state in target.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        [tick] = target.instance.get_ticks(state.instigator_origin_id, state.selector_id)
        rows[state.instigator_name] = [tick.status, tick.skip_reason]
    webhook_id = f"msg_{run.run_id}_completed"
    assert rows["webhook_deliveries"] == [TickStatus.SKIPPED, f"gave up on {webhook_id} after 1 attempt(s)"]
    assert rows["submitted_plans"] == [
        TickStatus.SKIPPED,
        f"rejected: {ghost} (plan.baseExecutionId: base execution exec_ghost does not exist)",
    ]
    # Ticks that did nothing say so in a few words.
    assert rows["provider_waits"] == [TickStatus.SKIPPED, "no provider job due"]
    assert rows["lost_launches"] == [TickStatus.SKIPPED, "runs are not launched through a broker"]
