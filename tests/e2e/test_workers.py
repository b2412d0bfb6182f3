"""End to end: runs in warm `video-pipelines worker` processes through VideoCeleryRunLauncher.

One deployment per broker (Redis as broker and result backend; then Amazon SQS on moto's server as
broker, Redis as result backend, for the tests where SQS changes something): a real dagster-daemon and
webserver on PostgreSQL, two real workers (concurrency 1 each), a local Replicate-protocol
server whose predictions never finish unless canceled (but for the prompt `SLOW_PROMPT`, which
takes `SLOW_SECONDS`), and a webhook receiver. Parking is off: these tests need runs that hold their
worker while a prediction runs (tests/e2e/test_parking.py has the runs that give it back).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.doors import client
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import ApiKeys

from ..dagster.test_remote_overlap import TimedReplicate
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..receiver import WebhookReceiver, running_receiver
from ..unit.test_providers_replicate_fal import TOKEN
from ..workers import broker_env, node_name, sqs_env, start_worker, wait_for_workers

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-workers")]

SECRET = "sk-workers-e2e-41c7"


def local_plan(index: int, priority: str | None = None) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "jobs": [
            {"id": "a", "type": "generateVideo", "params": {"prompt": f"clip {index}", "duration": 1, "resolution": 64}}
        ]
    }
    if priority:
        plan["priority"] = priority
    return plan


HELD_PLAN = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}}]}


SLOW_PROMPT = "a slow scene"
SLOW_SECONDS = 12.0
SHARED_PROMPT = "one scene for two executions"
SHARED_SECONDS = 8.0
NEVER = 1e9  # seconds: a prediction that only a cancel ends


@pytest.fixture(scope="module", params=["redis", "sqs"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def replicate(clip: bytes, broker: str) -> Iterator[TimedReplicate]:
    """One server per deployment (`broker`): the tests count the predictions of their deployment."""
    api = TimedReplicate(
        auth=f"Bearer {TOKEN}",
        output=clip,
        seconds=NEVER,
        seconds_for={SLOW_PROMPT: SLOW_SECONDS, SHARED_PROMPT: SHARED_SECONDS},
    )
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def receiver(broker: str) -> Iterator[WebhookReceiver]:
    """One receiver per deployment (`broker`), as `replicate`: the tests count the webhooks of their deployment."""
    yield from running_receiver()


def redis_only(broker: str, why: str) -> None:
    """Skip on SQS a test that shows nothing broker-specific there, or what SQS does not do (docs/scaling-out.md)."""
    if broker != "redis":
        pytest.skip(f"on {broker}: {why}")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, replicate: TimedReplicate, broker: str, request: pytest.FixtureRequest
) -> Iterator[DagsterDeployment]:
    # moto's server (tests/conftest.py) serves SQS as well as S3.
    brokers = broker_env() if broker == "redis" else sqs_env(request.getfixturevalue("s3_endpoint"))
    env = {
        **brokers,
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-workers",
        "VIDEO_PIPELINES_PARKING": "off",
        "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS": "1,1,1",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
    }
    tmp = tmp_path_factory.mktemp(f"e2e_workers_{broker}")
    with deployment_database() as url, dagster_deployment(tmp, url, extra_env=env, celery=True) as deployment:
        nodes = [start_worker(deployment, "w1"), start_worker(deployment, "w2")]
        wait_for_workers(deployment, nodes)
        yield deployment


@pytest.fixture
def target(deployment: DagsterDeployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    with deployment.client(monkeypatch) as target:
        yield target


def wait_until(predicate: Any, timeout: float, what: str, deployment: DagsterDeployment) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{deployment.log_tail()}"
        time.sleep(0.2)


def test_eight_executions_complete_on_two_workers(deployment: DagsterDeployment, target: client.Deployment) -> None:
    ids = [client.submit(local_plan(i), target=target) for i in range(8)]
    finals = [client.wait(execution_id, timeout=120, target=target) for execution_id in ids]
    assert [final["status"] for final in finals] == ["completed"] * 8, deployment.log_tail()
    workers = {final["worker"].split(" ")[0] for final in finals}
    assert {worker.split("-")[0] for worker in workers} == {"w1", "w2"}, workers
    assert all(" pid " in final["worker"] for final in finals)


def test_the_workers_and_queue_are_seen_with_an_operator_key_and_refused_to_a_tenant(
    deployment: DagsterDeployment,
    target: client.Deployment,
    replicate: TimedReplicate,
    receiver: WebhookReceiver,
) -> None:
    """`/api/workers` lists this deployment's workers by their beats, on Redis and on SQS alike: one of them running
    a held run (active 1, then 0 once it is canceled), and a third one until it stops."""
    app = create_app(ApiSettings())
    with TestClient(app) as http:
        keys = ApiKeys(app.state.api.store)
        operator = {"Authorization": f"Bearer {keys.create('operations', operator=True)[1]}"}
        tenant = {"Authorization": f"Bearer {keys.create('acme', tenant='acme')[1]}"}
        for path in ("/api/workers", "/api/queue"):
            assert http.get(path, headers=tenant).status_code == 403

        def listed() -> dict[str, dict[str, Any]]:
            answer = http.get("/api/workers", headers=operator)
            assert answer.status_code == 200, answer.text
            return {entry["name"]: entry for entry in answer.json()}

        execution_id, worker = start_held(target, replicate, "/views", receiver)
        run_id = client.status(execution_id, target=target)["runId"]
        busy_name = worker.split(" ")[0]
        # The run started in a child of that worker: its main process counts it at its next beat. The other worker's
        # beat may still count a run of an earlier test for up to a beat.
        wait_until(
            lambda: (
                {name: entry["active"] for name, entry in listed().items()}
                == {name: int(name == busy_name) for name in (node_name(deployment, "w1"), node_name(deployment, "w2"))}
            ),
            30,
            "the busy worker listed with its run, the other idle",
            deployment,
        )
        workers = listed()
        assert set(workers) == {node_name(deployment, "w1"), node_name(deployment, "w2")}
        busy = workers.pop(busy_name)
        [idle] = workers.values()
        queue = deployment.env["VIDEO_PIPELINES_QUEUE"]
        assert (busy["concurrency"], busy["active"], busy["runs"], busy["queues"]) == (1, 1, [run_id], [queue])
        assert (idle["concurrency"], idle["active"], idle["runs"]) == (1, 0, [])
        seen = datetime.fromisoformat(busy["lastSeen"])
        assert abs((datetime.now(UTC) - seen).total_seconds()) < 30
        queued = http.get("/api/queue", headers=operator).json()
        assert set(queued) == {"pendingSubmissions", "queuedRuns"} and set(queued["queuedRuns"]) == {
            "high",
            "normal",
            "low",
        }
        client.cancel(execution_id, target=target)
        assert client.wait(execution_id, timeout=60, target=target)["status"] == "canceled"
        wait_until(lambda: listed()[busy_name]["active"] == 0, 30, "the worker idle again after the cancel", deployment)
        assert listed()[busy_name]["runs"] == []

        third = start_worker(deployment, "w3", concurrency=2)
        wait_until(lambda: third in listed(), 120, "a third worker listed once it is up", deployment)
        assert (listed()[third]["concurrency"], listed()[third]["active"]) == (2, 0)
        deployment.stop("w3")
        # Stopped cleanly (SIGTERM), it removed its beat: gone at once, not after its beat went stale.
        assert set(listed()) == {node_name(deployment, "w1"), node_name(deployment, "w2")}


def start_held(
    target: client.Deployment, replicate: TimedReplicate, path: str, receiver: WebhookReceiver
) -> tuple[str, str]:
    """Submit a plan whose Replicate prediction never finishes; returns (execution id, its worker tag) once it runs."""
    before = set(replicate.jobs)
    execution_id = client.submit(
        HELD_PLAN, SubmitOptions(webhook_url=receiver.url(path), webhook_secret=SECRET), target=target
    )
    deadline = time.monotonic() + 90
    while not set(replicate.jobs) - before or client.status(execution_id, target=target)["worker"] is None:
        assert time.monotonic() < deadline, (
            f"the held execution never reached its worker: {client.status(execution_id, target=target)}, "
            f"jobs {list(replicate.jobs)}"
        )
        time.sleep(0.2)
    return execution_id, client.status(execution_id, target=target)["worker"]


def child_pid(worker: str) -> int:
    return int(worker.rsplit(" pid ", 1)[1])


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_cancel_ends_canceled_and_the_worker_stays_warm(
    deployment: DagsterDeployment, target: client.Deployment, replicate: TimedReplicate, receiver: WebhookReceiver
) -> None:
    before = set(replicate.jobs)
    execution_id, worker = start_held(target, replicate, "/cancel", receiver)
    [job_id] = set(replicate.jobs) - before
    pid = child_pid(worker)
    worker_pid = parent_of(pid)
    client.cancel(execution_id, target=target)
    final = client.wait(execution_id, timeout=60, target=target)
    assert final["status"] == "canceled", (final, deployment.log_tail())
    [request] = receiver.wait_for("/cancel", 1)
    payload = json.loads(request.body)
    assert payload["status"] == "canceled"
    assert replicate.jobs[job_id].canceled, "the Replicate prediction was left running"
    # SIGINT interrupted the run, not the process: the same warm child is still there, in the same worker.
    assert parent_of(pid) == worker_pid
    again = client.wait(client.submit(local_plan(100), target=target), timeout=60, target=target)
    assert again["status"] == "completed"


def test_two_executions_at_once_compute_a_shared_lineage_once(
    deployment: DagsterDeployment, target: client.Deployment, replicate: TimedReplicate, broker: str
) -> None:
    """Single-flight: both need the same remote generation; one creates it, the other waits and reuses it."""
    redis_only(broker, "single-flight is decided in the database, whatever the broker")
    plan = {
        "jobs": [
            {"id": "scene", "type": "generateVideo", "params": {"prompt": SHARED_PROMPT, "provider": "replicate"}},
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["scene"]},
        ]
    }
    first, second = (client.submit(plan, target=target) for _ in range(2))
    finals = [client.wait(execution_id, timeout=120, target=target) for execution_id in (first, second)]
    assert [final["status"] for final in finals] == ["completed", "completed"], (finals, deployment.log_tail())
    assert list(replicate.prompts.values()).count(SHARED_PROMPT) == 1, replicate.prompts  # one create, one bill
    # Both ran at once on the two workers: one computed, the other waited and took its result.
    assert {final["worker"].split("-")[0] for final in finals} == {"w1", "w2"}, [f["worker"] for f in finals]
    states = sorted(final["jobs"]["scene"]["status"] for final in finals)
    assert states == ["completed", "reused"], finals
    computed, reused = sorted(finals, key=lambda final: final["jobs"]["scene"]["status"])
    assert reused["jobs"]["scene"]["reusedFrom"] == computed["executionId"]
    assert reused["jobs"]["scene"]["result"]["sha256"] == computed["jobs"]["scene"]["result"]["sha256"]
    assert reused["jobs"]["scene"]["cost"] == 0 and reused["savedUsd"] > 0, reused
    # The node that reused its input still ran: reframe is local and its input is the same video.
    assert reused["jobs"]["square"]["status"] in ("completed", "reused")


RESUMED_PLAN = {
    "jobs": [
        {"id": "first", "type": "generateVideo", "params": {"prompt": "opening", "duration": 1, "resolution": 64}},
        {"id": "long", "type": "generateVideo", "params": {"prompt": SLOW_PROMPT, "provider": "replicate"}},
        {"id": "cut", "type": "merge", "dependsOn": ["first", "long"]},
    ]
}


def test_sigkilled_worker_is_named_and_its_execution_resumed_on_the_other(
    deployment: DagsterDeployment, target: client.Deployment, replicate: TimedReplicate, receiver: WebhookReceiver
) -> None:
    """Issue 11's must-show: the run worker is killed while a later node runs; the execution completes on its own."""
    execution_id = client.submit(
        RESUMED_PLAN, SubmitOptions(webhook_url=receiver.url("/killed"), webhook_secret=SECRET), target=target
    )
    # Kill once `first` is done and `long`'s prediction is in flight at the provider.
    wait_until(
        lambda: (
            client.status(execution_id, target=target)["jobs"]["first"]["status"] == "completed"
            and SLOW_PROMPT in replicate.prompts.values()
        ),
        90,
        "first completed and the slow prediction started",
        deployment,
    )
    status = client.status(execution_id, target=target)
    worker, first_run = status["worker"], status["runId"]
    assert worker is not None and status["jobs"]["long"]["status"] in ("pending", "running"), status
    node = worker.split(" ")[0]
    name = next(name for name in deployment.processes if node.startswith(f"{name}-"))
    process = deployment.processes.pop(name)
    killed_at = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    final = client.wait(execution_id, timeout=150, target=target)
    took = time.monotonic() - killed_at
    assert final["status"] == "completed", (final, deployment.log_tail())
    assert not os.path.exists(f"/proc/{child_pid(worker)}"), "the worker's child outlived it"
    # The lost run failed naming the lost worker; attempt 2 resumed it on the other worker.
    [lost, resumed] = final["attempts"]
    assert (lost["runId"], lost["status"], lost["reason"]) == (first_run, "failed", None), final["attempts"]
    assert (resumed["attempt"], resumed["status"], resumed["reason"]) == (2, "completed", "resume")
    lost_run = target.instance.get_run_by_id(first_run)
    assert lost_run is not None and node in lost_run.tags["video/lost_worker"], lost_run
    assert final["worker"] is not None and not final["worker"].startswith(node), final["worker"]
    # Nothing ran twice: `first` has no step in the resumed run, the slow prediction was created once and resumed.
    steps = {stats.step_key for stats in target.instance.get_run_step_stats(resumed["runId"])}
    assert "node[first]" not in steps and "node[long]" in steps, steps
    assert list(replicate.prompts.values()).count(SLOW_PROMPT) == 1, replicate.prompts
    assert final["jobs"]["first"]["status"] == "completed" and final["result"]["duration"] > 1.5, final
    # One webhook, for the final outcome.
    [request] = receiver.wait_for("/killed", 1)
    sent = json.loads(request.body)
    assert sent["status"] == "completed" and sent["executionId"] == execution_id
    deployment.next_ticks(target.instance)  # the webhook sensors tick again: still one webhook
    assert len(receiver.received("/killed")) == 1
    print(f"killed -> completed in {took:.1f} s")


def test_high_priority_submission_starts_before_earlier_low_ones(
    deployment: DagsterDeployment,
    target: client.Deployment,
    replicate: TimedReplicate,
    receiver: WebhookReceiver,
    broker: str,
) -> None:
    redis_only(broker, "SQS has no message priority: runs sent to it start in the order they were sent")
    # One worker of concurrency 1 is left: hold it, queue two low runs in the broker, then a high one.
    blocker, _worker = start_held(target, replicate, "/blocker", receiver)
    low = [client.submit(local_plan(300 + i, "low"), target=target) for i in range(2)]
    high: list[str] = []

    def in_broker(ids: list[str]) -> bool:
        """Every run was dequeued from Dagster's run queue and sent to the broker (STARTING), none taken yet."""
        run_ids = [client.status(i, target=target)["runId"] for i in ids]
        runs = [target.instance.get_run_by_id(run_id) if run_id else None for run_id in run_ids]
        return all(run is not None and run.status == dg.DagsterRunStatus.STARTING for run in runs)

    wait_until(lambda: in_broker(low), 60, "the low runs were sent to the broker", deployment)
    high.append(client.submit(local_plan(400, "high"), target=target))
    wait_until(lambda: in_broker(high), 60, "the high run was sent to the broker", deployment)
    assert in_broker(low), "a low run left the broker while the only worker was busy"
    client.cancel(blocker, target=target)
    finals = {i: client.wait(i, timeout=90, target=target) for i in [*low, *high]}
    assert all(final["status"] == "completed" for final in finals.values()), finals
    starts = {i: target.instance.get_run_record_by_id(final["runId"]).start_time for i, final in finals.items()}  # type: ignore[union-attr]
    assert starts[high[0]] < min(starts[i] for i in low), starts
