"""The one decision every door admits a plan through (`executions.admit`), without Dagster: literal private
addresses and unusable bases are refused there, so no door can take a plan another refuses.
The doors themselves, side by side on one deployment, are in tests/dagster/test_doors_agree.py."""

from __future__ import annotations

from typing import Any

import pytest

from video_pipelines.errors import PlanValidationError
from video_pipelines.executions import BaseReadiness, admit
from video_pipelines.executions.records import RunState
from video_pipelines.net import parse_allowed_hosts

from ..memory_records import MemoryRunRecords

GENERATE = {"id": "g", "type": "generateVideo", "params": {"prompt": "x", "duration": 1}}
LOOPBACK = "refused: 127.0.0.1 is not a public address (loopback); add it to VIDEO_PIPELINES_ALLOWED_HOSTS to allow it"


def voiced(audio_url: str, **plan: Any) -> dict[str, Any]:
    voice = {"id": "v", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["g"]}
    return {"jobs": [GENERATE, voice], **plan}


def problems(wire: dict[str, Any], records: MemoryRunRecords | None = None, **options: Any) -> list[str]:
    with pytest.raises(PlanValidationError) as refused:
        admit(wire, records, **options)
    return refused.value.problems


def test_a_literal_private_address_is_refused_whoever_admits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS", raising=False)
    hooked = voiced("http://127.1/a.mp3", webhook={"url": "http://[::1]:8443/hook"})
    assert problems(hooked) == [
        f"v.params.audioUrl: {LOOPBACK}",
        "plan.webhook.url: refused: ::1 is not a public address (loopback); add it to VIDEO_PIPELINES_ALLOWED_HOSTS "
        "to allow it",
    ]
    # A hostname is checked where it is fetched (its address may change), never here.
    assert admit(voiced("http://localhost:9/a.mp3")).resolved is not None


def test_the_allowed_hosts_come_from_the_environment_unless_the_door_gives_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    assert admit(voiced("http://127.0.0.1:9/a.mp3")).resolved is not None
    # The API passes what it read at start-up.
    assert problems(voiced("http://127.0.0.1:9/a.mp3"), allowed=parse_allowed_hosts("")) == [
        f"v.params.audioUrl: {LOOPBACK}"
    ]


def test_a_base_is_refused_or_waited_for_the_same_for_an_operator_and_its_tenant() -> None:
    records = MemoryRunRecords()
    plan = {"jobs": [GENERATE]}
    records.add_run("exec_failed", plan, RunState.FAILURE)
    records.add_run("exec_running", plan, RunState.STARTED)
    failed = (
        "plan.baseExecutionId: base execution exec_failed failed (run run-exec_failed); submit against a completed base"
    )
    for tenant in (None, "default"):
        assert problems({**plan, "baseExecutionId": "exec_failed"}, records, tenant=tenant) == [failed]
        assert problems({**plan, "baseExecutionId": "exec_ghost"}, records, tenant=tenant) == [
            "plan.baseExecutionId: base execution exec_ghost does not exist"
        ]
        waiting = admit({**plan, "baseExecutionId": "exec_running"}, records, tenant=tenant)
        assert waiting.base.readiness is BaseReadiness.WAITING and waiting.resolved is None
    # Another tenant's base reads as a missing one.
    assert problems({**plan, "baseExecutionId": "exec_running"}, records, tenant="beta") == [
        "plan.baseExecutionId: base execution exec_running does not exist"
    ]


def test_only_an_operator_may_name_a_deployment_variable_as_the_webhook_secret() -> None:
    hooked = {
        "jobs": [GENERATE],
        "webhook": {"url": "https://hooks.example.com/v", "secretEnv": "AWS_SECRET_ACCESS_KEY"},
    }
    [problem] = problems(hooked, tenant="acme")
    assert problem.startswith("plan.webhook.secretEnv: names an environment variable of the deployment")
    assert admit(hooked).plan.webhook is not None  # an operator (tenant None), e.g. a run of their own
