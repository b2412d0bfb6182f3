"""End to end: runs park while Replicate works, and a signed webhook (or the poller) wakes their execution.

One deployment for the module: the daemon, two real Celery workers (concurrency 2) on Redis, PostgreSQL, the
API (`VIDEO_PIPELINES_PUBLIC_URL` points at it), and a Replicate-protocol server whose predictions take a few
seconds and then POST a Standard-Webhooks-signed prediction to the `webhook` they were created with; predictions
whose prompt says "silent" never call back (the poller finds them). A fal-protocol server does the same for fal's
queue: its requests call their `fal_webhook` back signed with ED25519 keys it serves as the JWKS (`FAL_JWKS_URL`).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from video_pipelines.doors import client

from ..api_process import ApiServer, api_process
from ..conftest import free_port
from ..dagster.test_remote_overlap import TimedReplicate
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..unit.test_fal_webhooks import FalSigner, fal_result
from ..unit.test_providers_replicate_fal import TOKEN, Answer, FakeFal, Job
from ..workers import broker_env, start_worker, wait_for_workers

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-parking")]

SIGNING_SECRET = "whsec_" + base64.b64encode(b"parking-e2e-signing-secret-32by").decode()
PREDICTION_SECONDS = 4.0
NEVER = 1e9
BREAKER_OPEN_SECONDS = 6


@dataclass
class CallingReplicate(TimedReplicate):
    """Replicate's predictions, each calling back its `webhook` (signed) when it succeeds, unless "silent"."""

    # job id -> (when the webhook was sent, epoch seconds; the answer's status and body)
    callbacks: dict[str, tuple[float, int, dict[str, Any]]] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)
    file_delay: float = 0.0  # seconds before an output file is served (a continuation caught collecting it)
    hooks: dict[str, str] = field(default_factory=dict)  # job id -> the webhook it was created with
    down: bool = False  # an outage: every create is refused with 503
    refused_at: list[float] = field(default_factory=list)

    def dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        if self.file_delay and path.strip("/").startswith("files"):
            time.sleep(self.file_delay)  # outside the server's lock: other requests go on
        return super().dispatch(method, path, headers, raw)

    def created(self, job: Job) -> Answer:
        if self.down:
            self.refused_at.append(time.monotonic())
            self.jobs.pop(job.id, None)
            return 503, {}, {"detail": "Service Unavailable"}
        answer = super().created(job)
        body = self.requests[-1].body
        prompt = self.prompts[job.id]
        if body.get("webhook") and "silent" not in prompt:
            assert body.get("webhook_events_filter") == ["completed"]
            self.hooks[job.id] = body["webhook"]
            seconds = self.seconds_for.get(prompt, self.seconds)
            if seconds < NEVER:
                self.call_back_in(seconds, job)
        return answer

    def call_back_in(self, seconds: float, job: Job) -> None:
        timer = threading.Timer(seconds, self.call_back, (job, self.hooks[job.id]))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def release(self, prompts: list[str]) -> None:
        """Predictions held (NEVER) end now, calling back as they do."""
        with self._lock:
            for prompt in prompts:
                self.seconds_for[prompt] = 0.0
            held = [job for job_id, job in self.jobs.items() if self.prompts[job_id] in prompts]
        for job in held:
            if job.id in self.hooks:
                self.call_back_in(0.0, job)

    def call_back(self, job: Job, url: str) -> None:
        with self._lock:
            if job.canceled:
                return
            self.ended_at.setdefault(job.id, time.monotonic())
            prediction = self.prediction(job, "succeeded", output=[self.file_url()])
        data = json.dumps(prediction)
        message_id = f"msg_{job.id}"
        now = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SIGNING_SECRET).sign(message_id, now, data),
            "Content-Type": "application/json",
        }
        sent = time.time()
        answer = httpx.post(url, content=data, headers=headers, timeout=10)
        self.callbacks[job.id] = (sent, answer.status_code, answer.json())

    def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        super().stop()


@dataclass
class CallingFal(FakeFal):
    """fal's queue: requests run `seconds`, then call back the `fal_webhook` they were queued with, signed."""

    seconds: float = PREDICTION_SECONDS
    signer: FalSigner = field(default_factory=FalSigner)
    created_at: dict[str, float] = field(default_factory=dict)
    # request id -> the answer to its webhook (status, body)
    callbacks: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)

    def created(self, job: Job) -> Answer:  # under the server's lock, right after the request was recorded
        self.created_at[job.id] = time.monotonic()
        hook = parse_qs(self.requests[-1].path.partition("?")[2]).get("fal_webhook")
        if hook:
            timer = threading.Timer(self.seconds, self.call_back, (job, hook[0]))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
        return super().created(job)

    def answer(self, kind: str, job: Job) -> Answer:
        if kind == "status" and time.monotonic() - self.created_at[job.id] < self.seconds:
            return 202, {}, {"status": "IN_PROGRESS"}
        if kind == "status":
            return 200, {}, {"status": "COMPLETED"}
        return super().answer(kind, job)

    def call_back(self, job: Job, url: str) -> None:
        body = fal_result(job.id)
        headers = {**self.signer.headers(body, job.id), "Content-Type": "application/json"}
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        self.callbacks[job.id] = (answer.status_code, answer.json())

    def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.signer.stop()
        super().stop()


@pytest.fixture(scope="module")
def fal(clip: bytes) -> Iterator[CallingFal]:
    api = CallingFal(auth=f"Key {TOKEN}", output=clip)
    api.signer.start()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def replicate(clip: bytes) -> Iterator[CallingReplicate]:
    api = CallingReplicate(auth=f"Bearer {TOKEN}", output=clip, seconds=PREDICTION_SECONDS)
    api.start()
    yield api
    api.stop()


@dataclass
class Parking:
    deployment: DagsterDeployment
    api: ApiServer


@pytest.fixture(scope="module")
def parking(
    tmp_path_factory: pytest.TempPathFactory, replicate: CallingReplicate, fal: CallingFal
) -> Iterator[Parking]:
    port = free_port()
    env = {
        **broker_env(),
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-parking",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
        "REPLICATE_WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
        "FAL_KEY": TOKEN,
        "FAL_QUEUE_BASE_URL": fal.base_url,
        "FAL_JWKS_URL": fal.signer.url,
        "VIDEO_PIPELINES_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # The poller's interval: longer than a webhook's way to a continuation, short enough for silent jobs.
        "VIDEO_PIPELINES_PROVIDER_POLL_SECONDS": "3",
        "VIDEO_PIPELINES_BREAKER_FAILURES": "2",
        "VIDEO_PIPELINES_BREAKER_OPEN_SECONDS": str(BREAKER_OPEN_SECONDS),
    }
    tmp = tmp_path_factory.mktemp("e2e_parking")
    with (
        deployment_database() as url,
        dagster_deployment(tmp, url, extra_env=env, celery=True, webserver=False) as deployment,
    ):
        nodes = [start_worker(deployment, name, concurrency=2) for name in ("w1", "w2")]
        wait_for_workers(deployment, nodes)
        with api_process(deployment.env, logs=tmp / "logs", port=port) as api:
            yield Parking(deployment, api)


@pytest.fixture
def target(parking: Parking, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_API_BASE_URL", parking.deployment.env["REPLICATE_API_BASE_URL"])
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    with parking.deployment.client(monkeypatch) as target:
        yield target


def generation(prompt: str, **plan: Any) -> dict[str, Any]:
    params = {"prompt": prompt, "duration": 1, "provider": "replicate"}
    return {"jobs": [{"id": "gen", "type": "generateVideo", "params": params}], **plan}


def wait_until(predicate: Any, timeout: float, what: str, parking: Parking) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{parking.deployment.log_tail()}"
        time.sleep(0.1)


def test_executions_park_while_predictions_run_and_webhooks_or_the_poller_continue_them(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    prompts = [f"scene {index}" for index in range(6)] + ["silent scene A", "silent scene B"]
    replicate.seconds_for.update(dict.fromkeys(prompts, NEVER))  # held until every execution is seen parked
    ids = {client.submit(generation(prompt), target=target): prompt for prompt in prompts}

    def all_waiting() -> bool:
        statuses = [client.status(execution_id, target=target) for execution_id in ids]
        return all(status["jobs"]["gen"]["status"] == "waiting" for status in statuses)

    wait_until(all_waiting, 90, "every execution parked", parking)
    # Parked: the predictions run, no run holds a worker, and each waiting node says what it waits on.
    assert len(replicate.jobs) == len(prompts)
    assert target.records.in_progress() == [], "a parked execution still holds a run"
    status = client.status(next(iter(ids)), target=target)
    assert status["status"] == "processing"
    job = status["jobs"]["gen"]["providerJob"]
    assert job["provider"] == "replicate" and job["id"] in replicate.jobs and job["since"]

    replicate.release(prompts)
    finals = {execution_id: client.wait(execution_id, timeout=60, target=target) for execution_id in ids}
    assert {final["status"] for final in finals.values()} == {"completed"}, parking.deployment.log_tail()
    assert len(replicate.jobs) == len(prompts), "a prediction was created twice"
    for execution_id, final in finals.items():
        reasons = [attempt["reason"] for attempt in final["attempts"]]
        assert reasons == [None, "continue"], (ids[execution_id], final["attempts"])
        assert final["result"]["sha256"] and final["jobs"]["gen"]["status"] == "completed"
    # Signed webhooks were taken (200, naming the execution); silent predictions were found by the poller.
    called = {replicate.prompts[job_id]: answer for job_id, (_at, code, answer) in replicate.callbacks.items()}
    assert sorted(called) == sorted(prompt for prompt in prompts if "silent" not in prompt)
    assert all(answer["executionId"] in ids for answer in called.values())
    # The workers' runs captured their output into the UI's files, without `tail` processes (compute_logs.py).
    run_id = finals[next(iter(ids))]["attempts"][-1]["runId"]
    assert not [entry for entry in target.instance.all_logs(run_id) if "log capture" in entry.user_message]
    assert list((parking.deployment.home / "storage" / run_id / "compute_logs").glob("*.complete"))


def test_a_fal_request_parks_and_its_signed_webhook_continues_the_execution(
    parking: Parking, fal: CallingFal, target: client.Deployment
) -> None:
    params = {"prompt": "a fal scene", "duration": 1, "provider": "fal"}
    execution_id = client.submit({"jobs": [{"id": "gen", "type": "generateVideo", "params": params}]}, target=target)
    final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "completed", (final, parking.deployment.log_tail())
    assert [attempt["reason"] for attempt in final["attempts"]] == [None, "continue"], final["attempts"]
    assert final["result"]["sha256"] and len(fal.seen("create")) == 1, "the request was queued twice"
    # The webhook was verified against the keys fal publishes, and named the job the node waited on.
    [(request_id, (code, answer))] = fal.callbacks.items()
    assert code == 200, answer
    assert answer["jobId"] == f"fal-ai/kling-video/{request_id}" and answer["executionId"] == execution_id
    assert fal.signer.fetches == 1
    forged = fal_result(request_id)
    headers = {**fal.signer.headers(forged, request_id), "X-Fal-Webhook-Timestamp": str(int(time.time()) - 600)}
    url = f"{parking.api.url}/api/providers/fal/webhook?app=fal-ai/kling-video"
    assert httpx.post(url, content=forged, headers=headers).status_code == 401, "a stale call is taken"


def test_a_webhook_without_a_valid_signature_changes_nothing(parking: Parking) -> None:
    url = f"{parking.api.url}/api/providers/replicate/webhook"
    body = json.dumps({"id": "forged", "status": "succeeded"})
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    forged = httpx.post(
        url,
        content=body,
        headers={
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
        },
    )
    assert forged.status_code == 401
    assert httpx.post(f"{parking.api.url}/api/providers/nobody/webhook", content=body).status_code == 404


def test_canceling_a_parked_execution_cancels_its_prediction(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    replicate.seconds_for["held for a cancel"] = NEVER
    execution_id = client.submit(generation("held for a cancel"), target=target)
    wait_until(
        lambda: client.status(execution_id, target=target)["jobs"]["gen"]["status"] == "waiting",
        30,
        "the execution parked",
        parking,
    )
    job_id = replicate.job_for("held for a cancel")
    creates = len(replicate.jobs)
    assert client.cancel(execution_id, target=target)["status"] == "canceled"
    assert replicate.jobs[job_id].canceled, "the parked prediction was not canceled"
    time.sleep(4)  # a poller tick or two: nothing is created or continued afterwards
    final = client.status(execution_id, target=target)
    assert final["status"] == "canceled" and len(final["attempts"]) == 1
    assert len(replicate.jobs) == creates


def test_a_cancel_as_the_run_parks_ends_the_execution_canceled_with_its_prediction(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    replicate.seconds_for["canceled at once"] = NEVER
    execution_id = client.submit(generation("canceled at once"), target=target)
    wait_until(lambda: "canceled at once" in replicate.prompts.values(), 30, "the prediction created", parking)
    client.cancel(execution_id, target=target)  # the run is still live: it parks as the cancel comes, or is stopped
    wait_until(lambda: client.status(execution_id, target=target)["status"] == "canceled", 30, "canceled", parking)
    job_id = replicate.job_for("canceled at once")
    wait_until(lambda: replicate.jobs[job_id].canceled, 10, "the prediction canceled", parking)


def test_a_deadline_that_passes_while_parked_fails_the_execution_and_cancels_its_prediction(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    replicate.seconds_for["held past its deadline silent"] = NEVER
    execution_id = client.submit(generation("held past its deadline silent", timeoutSeconds=8), target=target)
    final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "failed", final
    assert final["error"].startswith(
        "deadline exceeded after 8 s (timeoutSeconds); unfinished: gen (waiting on replicate"
    )
    job_id = replicate.job_for("held past its deadline silent")
    wait_until(lambda: replicate.jobs[job_id].canceled, 10, "the prediction canceled", parking)


def test_two_executions_of_one_lineage_at_once_pay_for_one_prediction(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    """The second execution's node waits for the first's parked prediction without a worker: it parks too."""
    prompt = "one scene for two executions"
    replicate.seconds_for[prompt] = NEVER  # held until both executions are seen parked
    before = len(replicate.jobs)
    first = client.submit(generation(prompt), target=target)
    wait_until(lambda: len(replicate.jobs) > before, 30, "the first prediction created", parking)
    second = client.submit(generation(prompt), target=target)

    def both_waiting() -> bool:
        return all(client.status(each, target=target)["jobs"]["gen"]["status"] == "waiting" for each in (first, second))

    wait_until(both_waiting, 60, "both executions parked", parking)
    assert target.records.in_progress() == [], "an execution waiting on another's prediction holds a run"
    job = client.status(second, target=target)["jobs"]["gen"]["providerJob"]
    assert (job["provider"], job["id"]) == ("replicate", replicate.job_for(prompt)), "it names the job it waits on"
    replicate.release([prompt])
    finals = [client.wait(execution_id, timeout=60, target=target) for execution_id in (first, second)]
    assert [final["status"] for final in finals] == ["completed", "completed"], parking.deployment.log_tail()
    assert len(replicate.jobs) == before + 1, "the second execution created the same prediction again"
    assert finals[1]["jobs"]["gen"]["reusedFrom"] == first
    assert [attempt["reason"] for attempt in finals[1]["attempts"]] == [None, "continue"], finals[1]["attempts"]
    assert finals[0]["result"]["sha256"] == finals[1]["result"]["sha256"]


def test_an_outage_moves_nodes_to_their_fallback_and_its_circuit_keeps_them_off_until_a_probe_closes_it(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    """Every create refused: nodes complete on their fallback, two failures open the deployment's circuit, and while
    it is open only probes reach the provider; a node with no fallback waits and completes once a probe passes."""

    def with_fallback(prompt: str) -> dict[str, Any]:
        plan = generation(prompt)
        plan["jobs"][0]["params"]["fallbacks"] = [{"provider": "local"}]
        return plan

    def circuits() -> Any:
        return httpx.get(f"{parking.api.url}/health").json().get("providers", {})

    replicate.down = True
    first = client.wait(client.submit(with_fallback("outage 1"), target=target), timeout=60, target=target)
    assert first["status"] == "completed", (first, parking.deployment.log_tail())
    made = first["jobs"]["gen"]["result"]
    assert (made["provider"], made["fallbackFrom"]) == ("local", ["replicate"])
    assert len(replicate.refused_at) == 2, "two transient failures opened the circuit; the node moved on at once"
    assert circuits() == {"replicate": "open"}
    metrics = httpx.get(f"{parking.api.url}/metrics").text
    assert 'video_pipelines_provider_circuit_open{provider="replicate"} 1.0' in metrics

    later = [client.submit(with_fallback(f"outage {number}"), target=target) for number in (2, 3, 4)]
    finals = [client.wait(execution_id, timeout=60, target=target) for execution_id in later]
    assert [final["jobs"]["gen"]["result"]["provider"] for final in finals] == ["local"] * 3
    # While the circuit is open the provider sees only its probes, one per open period (none when they ran in it).
    gaps = [after - before for before, after in pairwise(replicate.refused_at[1:])]
    assert all(gap >= BREAKER_OPEN_SECONDS - 0.5 for gap in gaps), gaps

    waiting = client.submit(generation("waits for the circuit"), target=target)
    wait_until(lambda: client.status(waiting, target=target)["status"] == "processing", 30, "its run started", parking)
    refused = len(replicate.refused_at)
    replicate.down = False
    final = client.wait(waiting, timeout=90, target=target)
    assert final["status"] == "completed", (final, parking.deployment.log_tail())
    assert "waits for the circuit" in replicate.prompts.values() and len(replicate.refused_at) <= refused + 1
    assert circuits() == {}, "the probe that passed closed the circuit"


def test_a_worker_killed_during_a_continuation_is_resumed_and_pays_for_nothing_twice(
    parking: Parking, replicate: CallingReplicate, target: client.Deployment
) -> None:
    """Last in the module: it kills one of the two workers."""
    replicate.file_delay = 15.0
    execution_id = client.submit(generation("collected by a worker that dies"), target=target)

    def collecting() -> bool:
        status = client.status(execution_id, target=target)
        attempts = status["attempts"]
        return len(attempts) == 2 and attempts[1]["status"] == "processing" and status["worker"] is not None

    wait_until(collecting, 60, "the continuation collecting the prediction on a worker", parking)
    node = client.status(execution_id, target=target)["worker"].split(" ")[0]
    deployment = parking.deployment
    name = next(name for name in deployment.processes if node.startswith(f"{name}-"))
    process = deployment.processes.pop(name)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    replicate.file_delay = 0.0
    final = client.wait(execution_id, timeout=150, target=target)
    assert final["status"] == "completed", (final, deployment.log_tail())
    assert [attempt["reason"] for attempt in final["attempts"]] == [None, "continue", "resume"], final["attempts"]
    assert list(replicate.prompts.values()).count("collected by a worker that dies") == 1, "a prediction paid twice"
