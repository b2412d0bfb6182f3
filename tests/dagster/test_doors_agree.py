"""Every door admits a plan through the same decision (`executions.admit`), so the same plan gets the same answer
at each: `video-pipelines validate`, a local `video-pipelines submit`, the HTTP API, the plan sensor (a plan stored
past the doors, as an older process did) and the Launchpad (its config check, then the `plan` step of its run).

Issue 26 found a loopback `audioUrl` refused by the API only, and a variant of a failed base accepted (202) and
rejected later by the sensor while one of a missing base got 422 at once. And `cancel` of a finished execution.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.doors import cli, client
from video_pipelines.doors.api_client import ApiClient
from video_pipelines.errors import ExecutionConflict
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.sensors.plans import evaluate_submissions
from video_pipelines.plan.problems import PlanProblem
from video_pipelines.submissions import ApiKeys

GENERATE = {"id": "g", "type": "generateVideo", "params": {"prompt": "a lighthouse", "duration": 1}}
PLAN: dict[str, Any] = {"jobs": [GENERATE]}
ACCEPTED = "accepted"
WAITING = "waiting"


def voiced(audio_url: str) -> dict[str, Any]:
    return {"jobs": [GENERATE, {"id": "v", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["g"]}]}


def variant(base_id: str) -> dict[str, Any]:
    return {**PLAN, "baseExecutionId": base_id}


# One door: a plan in, its answer out: ACCEPTED, WAITING, or the problems it names ("; " between two).
Answer = str


@dataclass
class Doors:
    target: client.Deployment
    api: TestClient
    operator_key: str
    tmp_path: Path
    capsys: pytest.CaptureFixture[str]

    def validate(self, plan: dict[str, Any], *options: str) -> Answer:
        return self._cli("validate", plan, *options)

    def submit(self, plan: dict[str, Any]) -> Answer:
        before = len(self.target.store.newest(None, limit=100))
        answer = self._cli("submit", plan)
        stored = len(self.target.store.newest(None, limit=100)) - before
        assert stored == (1 if answer == ACCEPTED else 0), "a refused plan stores nothing"
        return answer

    def _cli(self, verb: str, plan: dict[str, Any], *options: str) -> Answer:
        path = self.tmp_path / "plan.json"
        path.write_text(json.dumps(plan))
        self.capsys.readouterr()
        code = cli.main([verb, str(path), *options])
        err = self.capsys.readouterr().err
        if code == 0:
            return ACCEPTED
        assert code == cli.EXIT_INVALID and err.startswith("invalid plan:\n"), (code, err)
        return "; ".join(line.strip() for line in err.splitlines()[1:])

    def http(self, plan: dict[str, Any], key: str | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {key or self.operator_key}"}
        response = self.api.post("/api/execute", json=plan, headers=headers)
        if response.status_code == 202:
            return ACCEPTED
        assert response.status_code == 422, response.text
        return "; ".join(str(PlanProblem(**error)) for error in response.json()["errors"])

    def sensor(self, plan: dict[str, Any], tenant: str = "default") -> Answer:
        submission, _ = self.target.store.submit(plan, tenant=tenant)
        tick = evaluate_submissions(self.target.store, self.target.instance)
        execution_id = submission.execution_id
        if execution_id in tick.waiting:
            return WAITING
        if execution_id in tick.rejected:
            refusal = tick.rejected[execution_id]
            assert refusal.startswith("invalid plan: "), refusal
            return refusal.removeprefix("invalid plan: ")
        assert execution_id in [request.run_key for request in tick.run_requests]
        return ACCEPTED

    def launchpad(self, plan: dict[str, Any]) -> Answer:
        """The Launchpad's config check, then what the run of that config does in its `plan` step."""
        job, run_config = execute_plan_job(), {"ops": {"plan": {"config": plan}}}
        assert dg.validate_run_config(job, run_config)
        result = job.execute_in_process(
            run_config=run_config, instance=self.target.instance, op_selection=["plan"], raise_on_error=False
        )
        if result.success:
            return ACCEPTED
        [failure] = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
        message = str(failure.step_failure_data.user_failure_data.description)  # type: ignore[union-attr]
        assert message.startswith("invalid plan:\n"), message
        return "; ".join(message.removeprefix("invalid plan:\n").strip().splitlines())


Door = Callable[[Doors, dict[str, Any]], Answer]
DOORS: dict[str, Door] = {
    "validate": Doors.validate,
    "local submit": Doors.submit,
    "HTTP API": Doors.http,
    "plan sensor": Doors.sensor,
    "Launchpad": Doors.launchpad,
}


@pytest.fixture
def doors(
    dagster_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Doors]:
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("VIDEO_PIPELINES_API_URL", raising=False)
    with client.deployment() as target, TestClient(create_app(ApiSettings.from_env())) as api:
        _, key = ApiKeys(target.store).create("operator", operator=True)
        yield Doors(target, api, key, tmp_path, capsys)


def answers(doors: Doors, plan: dict[str, Any]) -> dict[str, Answer]:
    return {name: door(doors, plan) for name, door in DOORS.items()}


def failed_run_id(doors: Doors) -> str:
    """A base that failed: a Launchpad run whose plan step refused it (an empty plan)."""
    result = execute_plan_job().execute_in_process(
        run_config={"ops": {"plan": {"config": {"jobs": []}}}}, instance=doors.target.instance, raise_on_error=False
    )
    assert not result.success
    return result.run_id


LOOPBACK = "refused: 127.0.0.1 is not a public address (loopback); add it to VIDEO_PIPELINES_ALLOWED_HOSTS to allow it"
METADATA = (
    "refused: 169.254.169.254 is a cloud metadata endpoint; only a VIDEO_PIPELINES_ALLOWED_HOSTS entry naming that "
    "exact address allows it"
)


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        pytest.param(voiced("http://127.0.0.1:9/voice.mp3"), f"v.params.audioUrl: {LOOPBACK}", id="loopback audioUrl"),
        pytest.param(
            {**PLAN, "webhook": {"url": "http://169.254.169.254/hook"}},
            f"plan.webhook.url: {METADATA}",
            id="metadata webhook URL",
        ),
        pytest.param(
            variant("exec_ghost"),
            "plan.baseExecutionId: base execution exec_ghost does not exist",
            id="missing base",
        ),
    ],
)
def test_every_door_refuses_the_same_plan_with_the_same_words(doors: Doors, plan: dict[str, Any], problem: str) -> None:
    assert answers(doors, plan) == dict.fromkeys(DOORS, problem)


def test_a_variant_of_a_failed_base_is_refused_at_every_door_at_once(doors: Doors) -> None:
    base_id = failed_run_id(doors)
    problem = f"plan.baseExecutionId: base execution {base_id} failed (run {base_id}); submit against a completed base"
    assert answers(doors, variant(base_id)) == dict.fromkeys(DOORS, problem)


def test_a_variant_of_a_canceled_submission_is_refused_at_every_door(doors: Doors) -> None:
    base = client.submit(PLAN, target=doors.target)
    client.cancel(base, target=doors.target)
    problem = f"plan.baseExecutionId: base execution {base} was canceled"
    assert answers(doors, variant(base)) == dict.fromkeys(DOORS, problem)


def test_a_variant_of_a_pending_base_is_accepted_and_waits(doors: Doors) -> None:
    """What cannot be known at a door (the base may still complete) is decided by the same function later."""
    base = client.submit(PLAN, target=doors.target)
    found = {name: door(doors, variant(base)) for name, door in DOORS.items() if name != "Launchpad"}
    assert found == {"validate": ACCEPTED, "local submit": ACCEPTED, "HTTP API": ACCEPTED, "plan sensor": WAITING}
    # A run cannot wait: the Launchpad's says why it stopped.
    result = execute_plan_job().execute_in_process(
        run_config={"ops": {"plan": {"config": variant(base)}}},
        instance=doors.target.instance,
        op_selection=["plan"],
        raise_on_error=False,
    )
    [failure] = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert description == f"plan.baseExecutionId: base execution {base} is pending"


def test_another_tenants_base_reads_as_missing_at_every_door_with_a_tenant(doors: Doors) -> None:
    theirs = client.submit(PLAN, target=doors.target)  # the operators' (default tenant's)
    _, beta = ApiKeys(doors.target.store).create("beta's", tenant="beta")
    problem = f"plan.baseExecutionId: base execution {theirs} does not exist"
    assert doors.validate(variant(theirs), "--tenant", "beta") == problem
    assert doors.http(variant(theirs), beta) == problem
    assert doors.sensor(variant(theirs), tenant="beta") == problem


def test_an_allowed_address_is_accepted_at_every_door(doors: Doors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    with TestClient(create_app(ApiSettings.from_env())) as api:
        doors.api = api
        assert answers(doors, voiced("http://127.0.0.1:9/voice.mp3")) == dict.fromkeys(DOORS, ACCEPTED)


# --- cancel of a finished execution: 409 naming its status, exit 1, the same error from both Python clients


def test_cancel_of_a_completed_execution_is_a_conflict_at_every_door(doors: Doors) -> None:
    done = execute_plan_job().execute_in_process(
        run_config={"ops": {"plan": {"config": PLAN}}}, instance=doors.target.instance
    )
    execution_id = done.run_id
    message = f"execution {execution_id} is completed; only a pending or processing execution can be canceled"

    response = doors.api.post(
        f"/api/execute/{execution_id}/cancel", headers={"Authorization": f"Bearer {doors.operator_key}"}
    )
    assert response.status_code == 409 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == message

    doors.capsys.readouterr()
    assert cli.main(["cancel", execution_id]) == 1
    captured = doors.capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"error: {message}\n")

    over_http = ApiClient("http://testserver", doors.operator_key, transport=doors.api._transport)
    for target in (doors.target, over_http):
        with pytest.raises(ExecutionConflict) as refused:
            client.cancel(execution_id, target=target)
        assert str(refused.value) == message
    assert client.status(execution_id, target=doors.target)["status"] == "completed"


def test_cancel_of_a_canceled_execution_answers_its_status_again(doors: Doors) -> None:
    execution_id = client.submit(PLAN, target=doors.target)
    assert client.cancel(execution_id, target=doors.target)["status"] == "canceled"
    doors.capsys.readouterr()
    assert cli.main(["cancel", execution_id]) == 0
    assert json.loads(doors.capsys.readouterr().out)["status"] == "canceled"
