"""The plan sensor, driven with build_sensor_context on a real instance and a real submission store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test

from video_pipelines.doors import client
from video_pipelines.executions import EXECUTION_ID_TAG, TENANT_TAG
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.sensors.plans import QUEUED_RUNS_PER_TENANT, evaluate_submissions, submitted_plans
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import SubmissionState

from .harness import run_plan_in_process

PLAN: dict[str, Any] = {
    "jobs": [{"id": "clip", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}]
}


@pytest.fixture
def target(dagster_home: Path) -> Iterator[client.Deployment]:
    with client.deployment() as deployment:
        yield deployment


def tick(target: client.Deployment) -> dg.SensorResult:
    # The store resource opens its database for the evaluation and closes it after, as the daemon does.
    with dg.build_sensor_context(
        instance=target.instance, resources={"submissions": SubmissionStoreResource()}
    ) as context:
        result = submitted_plans(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_pending_submission_becomes_a_run_request(target: client.Deployment) -> None:
    execution_id = client.submit(
        PLAN,
        SubmitOptions(priority="high", webhook_url="https://hooks.example.com/x", webhook_secret="s3cr3t"),
        target=target,
    )
    result = tick(target)
    [request] = result.run_requests or []
    assert request.run_key == execution_id
    assert request.tags["video/execution_id"] == execution_id
    assert request.tags["dagster/priority"] == "10"
    assert "video/base_execution_id" not in request.tags
    config = request.run_config
    assert config["ops"]["plan"]["config"]["webhook"] == {"url": "https://hooks.example.com/x"}
    assert "s3cr3t" not in json.dumps(config) and "s3cr3t" not in json.dumps(request.tags)
    assert target.store.webhook_secret(execution_id) == "s3cr3t"
    # Claimed before its run was asked for; until the run exists, it is asked for again (the daemon dedups run keys).
    assert target.store.get(execution_id).state is SubmissionState.LAUNCHING  # type: ignore[union-attr]
    [again] = tick(target).run_requests or []
    assert (again.run_key, again.tags, again.run_config) == (request.run_key, request.tags, request.run_config)


def test_a_launched_run_marks_the_submission(target: client.Deployment) -> None:
    execution_id = client.submit(PLAN, target=target)
    result = run_plan_in_process(PLAN, target.instance)
    target.instance.add_run_tags(result.run_id, {"video/execution_id": execution_id})
    tick_result = evaluate_submissions(target.store, target.instance)
    assert tick_result.launched == {execution_id: result.run_id}
    submission = target.store.get(execution_id)
    assert (
        submission is not None and submission.state is SubmissionState.LAUNCHED and submission.run_id == result.run_id
    )


def test_variant_waits_for_a_pending_base_and_is_rejected_with_a_bad_one(target: client.Deployment) -> None:
    base_id = client.submit(PLAN, target=target)
    variant_id = client.submit(PLAN, SubmitOptions(base_execution_id=base_id), target=target)
    # Stored without the door's check (by an older process): the sensor refuses it with the door's words.
    ghost, _ = target.store.submit({**PLAN, "baseExecutionId": "exec_ghost"})
    ghost_id = ghost.execution_id
    result = evaluate_submissions(target.store, target.instance)
    assert [r.run_key for r in result.run_requests] == [base_id]
    assert result.waiting == {variant_id: f"base execution {base_id} is pending"}
    refusal = "invalid plan: plan.baseExecutionId: base execution exec_ghost does not exist"
    assert result.rejected == {ghost_id: refusal}
    assert client.status(ghost_id, target=target)["error"] == refusal
    assert client.status(ghost_id, target=target)["status"] == "failed"

    refused_id = client.submit(PLAN, target=target)
    late_id = client.submit(PLAN, SubmitOptions(base_execution_id=refused_id), target=target)  # waits for it
    target.store.mark_rejected(refused_id, "invalid plan: clip.params.prompt: required")
    result = evaluate_submissions(target.store, target.instance)
    assert result.rejected[late_id].startswith(
        f"invalid plan: plan.baseExecutionId: base execution {refused_id} was rejected"
    )
    assert result.waiting == {variant_id: f"base execution {base_id} is pending"}  # its base is launching


def test_variant_of_a_completed_base_is_launched_with_its_tag(target: client.Deployment) -> None:
    base = run_plan_in_process(PLAN, target.instance)
    assert base.success
    variant_id = client.submit(PLAN, SubmitOptions(base_execution_id=base.run_id), target=target)
    [request] = tick(target).run_requests or []
    assert request.run_key == variant_id and request.tags["video/base_execution_id"] == base.run_id


def test_broken_submissions_never_block_the_others(target: client.Deployment) -> None:
    broken, _ = target.store.submit({"jobs": [{"id": "x", "type": "explode"}]})
    unreadable, _ = target.store.submit({"jobs": "not a list"})
    good = client.submit(PLAN, target=target)
    result = evaluate_submissions(target.store, target.instance)
    assert [r.run_key for r in result.run_requests] == [good]
    assert set(result.rejected) == {broken.execution_id, unreadable.execution_id}
    assert "x.type: unknown operation 'explode'" in result.rejected[broken.execution_id]


def test_cancel_a_pending_submission(target: client.Deployment) -> None:
    execution_id = client.submit(PLAN, target=target)
    status = client.cancel(execution_id, target=target)
    assert status["status"] == "canceled"
    assert evaluate_submissions(target.store, target.instance).run_requests == []


def test_idempotency_key_returns_the_same_execution(target: client.Deployment) -> None:
    first = client.submit(PLAN, SubmitOptions(idempotency_key="order-42"), target=target)
    again = client.submit(PLAN, SubmitOptions(idempotency_key="order-42"), target=target)
    assert first == again
    assert [r.run_key for r in evaluate_submissions(target.store, target.instance).run_requests] == [first]


def test_a_tenant_with_a_full_queue_waits_in_the_store_and_another_tenant_does_not(target: client.Deployment) -> None:
    """Dagster's run queue reads every queued run at each pass: a tenant's burst stays in the store beyond
    QUEUED_RUNS_PER_TENANT queued runs, taking turns there, and another tenant's submission is asked for at once."""
    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("video_pipelines"), "__repository__")
    origin = RemoteJobOrigin(repository_origin=repository, job_name="execute_plan")
    queued = [
        create_run_for_test(
            target.instance,
            job_name="execute_plan",
            status=dg.DagsterRunStatus.QUEUED,
            tags={TENANT_TAG: "acme", EXECUTION_ID_TAG: f"acme-{index}"},
            remote_job_origin=origin,
        )
        for index in range(QUEUED_RUNS_PER_TENANT)
    ]
    acme, _ = target.store.submit(PLAN, tenant="acme")
    bolt, _ = target.store.submit(PLAN, tenant="bolt")
    tick = evaluate_submissions(target.store, target.instance)
    assert [request.run_key for request in tick.run_requests] == [bolt.execution_id]
    assert tick.held == ["acme"] and "held in the store" in (tick.reason().skip_message or "")
    assert target.store.get(acme.execution_id).state is SubmissionState.PENDING  # type: ignore[union-attr]
    # One of acme's runs leaves the queue: its next submission is asked for (bolt's again: asked for, no run yet).
    target.instance.report_run_canceled(queued[0])
    tick = evaluate_submissions(target.store, target.instance)
    assert {request.run_key for request in tick.run_requests} == {acme.execution_id, bolt.execution_id}
    assert tick.held == []
