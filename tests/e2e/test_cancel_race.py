"""End to end: a cancel racing the launch of its execution, over HTTP, with a real daemon on PostgreSQL.

`POST /api/execute`, then `POST .../cancel` a moment later, again and again at different
moments, so that some cancels land before the plan sensor claims the submission, some between
its claim and the run's creation, some while the run starts or runs. Whatever the moment, the
cancel's answer is the truth: an execution answered `canceled` never starts a node after the answer
and never ends otherwise (a node its run had begun was interrupted, never completed); one answered
`pending` or `processing` ends canceled, or completed if its run finished first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
import pytest

from video_pipelines.doors.api_client import ApiClient
from video_pipelines.executions import EXECUTION_ID_TAG

from ..api_process import api_process
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..workers import broker_env, start_worker, wait_for_workers
from .test_api import create_key

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-cancel_race")]

PLAN: dict[str, Any] = {
    "jobs": [{"id": "clip", "type": "generateVideo", "params": {"prompt": "race", "duration": 1, "resolution": 64}}],
    "cache": False,  # every execution really runs its node: none is reused from another
}
# When each cancel follows its submission: the plan sensor looks every 0.2 s, and the daemon creates the run
# a few hundred milliseconds after the sensor's evaluation, so these cover every side of the claim.
DELAYS = [0.05 * step for step in range(16)]


@dataclass
class Service:
    deployment: DagsterDeployment
    url: str
    key: str


@pytest.fixture(scope="module", params=["celery", "default"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API beside a daemon whose runs go to a warm Celery worker (production), or Dagster's default launcher
    (a process per run; terminating a run that is starting fails it, so a cancel must not)."""
    celery = request.param == "celery"
    tmp = tmp_path_factory.mktemp(f"e2e_cancel_race_{request.param}")
    env = {"VIDEO_PIPELINES_SECRET_KEY": "e2e-cancel-race", **(broker_env() if celery else {})}
    with (
        deployment_database() as database_url,
        dagster_deployment(tmp, database_url, extra_env=env, celery=celery, webserver=False) as deployment,
    ):
        if celery:
            wait_for_workers(deployment, [start_worker(deployment, "w1", concurrency=4)])
        key = create_key(deployment, "racer", "acme")
        with api_process(env=deployment.env, logs=deployment.logs) as server:
            yield Service(deployment, server.url, key)


def nodes_started(instance: dg.DagsterInstance, execution_id: str) -> dict[str, float]:
    """When each node step started, in any run of the execution (the `plan` and `finish` steps run no node)."""
    started: dict[str, float] = {}
    for record in instance.get_run_records(dg.RunsFilter(tags={EXECUTION_ID_TAG: execution_id})):
        events = instance.get_records_for_run(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
        started |= {str(event.event_log_entry.step_key): event.event_log_entry.timestamp for event in events.records}
    return {step: at for step, at in started.items() if step.startswith("node")}


@dataclass
class Outcome:
    answer: str  # the status the cancel answered
    answered_at: float  # when the answer came (time.time(): this machine's clock, as the events')
    final: dict[str, Any]  # the status document once the execution ended
    started: dict[str, float]  # when each node step that started did

    @property
    def lie(self) -> bool:
        """Answered canceled, yet the execution went on: it ended otherwise, or a node started after the answer.
        (A node its run had begun before may have started: the cancel interrupted it, and it did not complete.)"""
        late = [step for step, at in self.started.items() if at > self.answered_at]
        return self.answer == "canceled" and (self.final["status"] != "canceled" or bool(late))

    def check(self) -> None:
        """The cancel's answer was the truth."""
        final = self.final["status"]
        assert self.answer in {"canceled", "pending", "processing", "completed"}, self
        assert final in {"canceled", "completed"}, self
        if self.answer == "canceled":
            assert not self.lie and self.final["result"] is None, self
        if self.answer == "completed":
            assert final == "completed", self
        if final == "canceled":
            assert all(job["status"] != "completed" for job in self.final["jobs"].values()), self


def outcomes(service: Service, answers: dict[str, tuple[str, float]], monkeypatch: pytest.MonkeyPatch) -> list[Outcome]:
    with ApiClient(service.url, service.key) as api:
        try:
            # Under run monitoring's 180 s cancel timeout: a run left CANCELING (its worker ignores a CANCELING
            # run) must be ended by its worker, not by that timeout.
            finals = {execution_id: api.wait(execution_id, timeout=150) for execution_id in answers}
        except Exception:
            print(service.deployment.log_tail())
            raise
    with service.deployment.client(monkeypatch) as target:
        return [Outcome(*answers[e], finals[e], nodes_started(target.instance, e)) for e in answers]


def api_client(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.key}"}, timeout=60)


def test_a_cancel_racing_the_launch_answers_the_truth(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, tuple[str, float]] = {}
    with api_client(service) as http:
        for delay in DELAYS:
            answer = http.post("/api/execute", json=PLAN)
            assert answer.status_code == 202, answer.text
            execution_id = answer.json()["executionId"]
            time.sleep(delay)  # the race itself: when the cancel follows the submission
            canceled = http.post(f"/api/execute/{execution_id}/cancel")
            if canceled.status_code == 409:  # it completed before the cancel came: the truth, named
                assert f"execution {execution_id} is completed" in canceled.json()["detail"], canceled.text
                answers[execution_id] = ("completed", time.time())
                continue
            assert canceled.status_code == 202, canceled.text
            answers[execution_id] = (canceled.json()["status"], time.time())
    seen = outcomes(service, answers, monkeypatch)
    print(
        "cancel answer -> final status, node steps started:",
        [(o.answer, o.final["status"], list(o.started)) for o in seen],
    )
    lies = [o for o in seen if o.lie]
    assert lies == [], f"answered canceled, yet the execution ran: {lies}"
    for outcome in seen:
        outcome.check()


def status_when(http: httpx.Client, execution_id: str, reached: Any, timeout: float = 120) -> dict[str, Any]:
    """The execution's status document, polled until `reached(document)`."""
    deadline = time.monotonic() + timeout
    while True:
        document: dict[str, Any] = http.get(f"/api/execute/{execution_id}/status").json()
        if reached(document):
            return document
        assert time.monotonic() < deadline, document
        time.sleep(0.05)


def test_a_cancel_of_a_running_or_finishing_run_answers_its_real_state(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api_client(service) as http:
        running = http.post("/api/execute", json=PLAN).json()["executionId"]
        status_when(http, running, lambda document: document["status"] == "processing")
        answer = http.post(f"/api/execute/{running}/cancel").json()["status"]
        # Processing, or already canceled (its `plan` step saw the cancel first, or its run was interrupted at once).
        [outcome] = outcomes(service, {running: (answer, time.time())}, monkeypatch)
        outcome.check()

        # The last node has its video; the run may still be ending. The cancel changes nothing: completed at once,
        # or 409 naming it when the run had ended before the cancel came.
        finishing = http.post("/api/execute", json=PLAN).json()["executionId"]
        made = status_when(http, finishing, lambda document: document["jobs"]["clip"]["status"] == "completed")
        response = http.post(f"/api/execute/{finishing}/cancel")
        if response.status_code == 409:
            assert f"execution {finishing} is completed" in response.json()["detail"]
            response = http.get(f"/api/execute/{finishing}/status")
        answer = response.json()
        assert (answer["status"], answer["result"]) == ("completed", made["jobs"]["clip"]["result"]), answer
        assert http.get(f"/api/execute/{finishing}/status").json()["status"] == "completed"
