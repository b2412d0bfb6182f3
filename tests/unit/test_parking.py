"""Parked executions (`executions.parking`, `submissions.waits`, `providers.callbacks`, `run_job` parking).

The life cycle on in-memory run records and a real store on SQLite; providers as a small fake that counts
checks and cancels. The deployment-level story (workers free, webhooks, the poller) is tests/e2e/test_parking.py.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import pytest
from standardwebhooks.webhooks import Webhook

from video_pipelines.executions import (
    EndedRunScan,
    RunState,
    enqueue_recently_ended,
    execution_status,
    notifications,
    outcomes,
    record_run_end,
)
from video_pipelines.executions.attempts import ExecutionRuns, attempt_run_tags, deadline_left
from video_pipelines.executions.lifecycle import cancel
from video_pipelines.executions.parking import continue_parked, end_parked, poll_waits
from video_pipelines.executions.records import (
    ATTEMPT_TAG,
    PARKED_END_TAG,
    PARKED_TAG_PREFIX,
    PREVIOUS_RUN_TAG,
    PROVIDER_JOB_TAG_PREFIX,
)
from video_pipelines.executions.status import ExecutionStatus
from video_pipelines.providers import callbacks
from video_pipelines.providers.base import provider_webhook_url
from video_pipelines.providers.callbacks import CallbackRefused, UnknownCaller, job_news
from video_pipelines.providers.context import parking_allowed
from video_pipelines.providers.fal import FalProvider
from video_pipelines.providers.fal_webhooks import FalKeys
from video_pipelines.providers.http import Parked, run_job
from video_pipelines.submissions import (
    AttemptReason,
    AttemptState,
    AttemptStore,
    CachedNode,
    ExecutionOutcomes,
    NodeResultIndex,
    ProviderWaits,
    SubmissionStore,
)
from video_pipelines.submissions.waits import SAME_LINEAGE, WaitState, follow_job_id, poll_seconds
from video_pipelines.vocabulary import ExecutionState, NodeState
from video_pipelines.webhooks import DeliveryOutbox

from ..memory_records import MemoryRunRecords
from .test_fal_webhooks import FalSigner, fal_result
from .test_providers_replicate_fal import FAST, GENERATION, LOOPBACK, POLL, TOKEN, FakeFal, RecordingLedger

PLAN: dict[str, Any] = {
    "jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "provider": "replicate"}}],
    "webhook": {"url": "https://hooks.example.com/parked"},
}
SIGNING_SECRET = "whsec_" + base64.b64encode(b"unit-signing-secret-of-32-bytes!").decode()


@dataclass
class FakeJobs:
    """A provider's jobs as the poller and a cancel see them."""

    name: str = "replicate"
    ended: set[str] = field(default_factory=set)
    checked: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)

    def job_finished(self, job_id: str) -> bool:
        self.checked.append(job_id)
        return job_id in self.ended

    def cancel_job(self, job_id: str) -> bool:
        self.canceled.append(job_id)
        return True


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


def parked_run(
    records: MemoryRunRecords,
    sqlite_store: SubmissionStore,
    execution_id: str = "exec-1",
    *,
    plan: dict[str, Any] = PLAN,
) -> str:
    """An execution whose first run parked node `gen` on replicate job p-<execution id>; its run id."""
    job_id = f"p-{execution_id}"
    tags = {PARKED_TAG_PREFIX + "gen": f"replicate {job_id}", PROVIDER_JOB_TAG_PREFIX + "gen": job_id}
    now = time.time()
    run = records.add_run(execution_id, plan, RunState.SUCCESS, tags=tags, started_at=now - 2, ended_at=now - 1)
    ProviderWaits(sqlite_store).park(
        "replicate", job_id, execution_id=execution_id, node_id="gen", run_id=run.run_id, check_in=0
    )
    return run.run_id


def test_run_job_parks_a_job_still_running_only_where_parking_is_allowed() -> None:
    remembered: list[str] = []

    class Ledger:
        def recall(self) -> str | None:
            return remembered[-1] if remembered else None

        def remember(self, job_id: str) -> None:
            remembered.append(job_id)

    canceled: list[str] = []
    states = iter(["running", "running", "done"])

    def job(parkable: bool) -> str:
        return run_job(
            Ledger(),
            create=lambda: "p1",
            check=lambda job_id: "video" if next(states) == "done" else None,
            cancel=canceled.append,
            provider="replicate",
            timeout=5,
            poll_interval=0.01,
            parkable=parkable,
        )

    with parking_allowed(), pytest.raises(Parked) as parked:
        job(parkable=True)
    assert (parked.value.provider, parked.value.job_id) == ("replicate", "p1")
    assert remembered == ["p1"] and canceled == [], "a parked job is remembered and keeps running"
    assert job(parkable=True) == "video", "without parking allowed, the run waits (the job recalled, not created)"
    assert remembered == ["p1"]


def test_a_parked_execution_is_processing_its_node_waiting_on_the_job(
    records: MemoryRunRecords, sqlite_store: SubmissionStore
) -> None:
    parked_run(records, sqlite_store)
    status = execution_status(records, sqlite_store, "exec-1")
    assert status.state is ExecutionState.PROCESSING and not status.is_terminal
    node = status.nodes["gen"]
    assert node.state is NodeState.WAITING and node.provider_job is not None
    assert (node.provider_job.provider, node.provider_job.id) == ("replicate", "p-exec-1")
    wire = status.to_wire()["jobs"]["gen"]
    assert wire["status"] == "waiting" and wire["providerJob"]["id"] == "p-exec-1"
    assert ExecutionStatus.from_wire(status.to_wire()) == status


def test_a_parked_runs_end_claims_no_end_and_sends_no_webhook_without_reading_the_status(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end observers (run-status sensors, the scan of recent ends) pass a parked run by: its execution goes on,
    and the continuation's end is the one to claim; reading the execution's status for it was most of their work."""
    run_id = parked_run(records, sqlite_store)
    [run] = records.execution_runs("exec-1")
    assert run.run_id == run_id and run.waits_on_providers

    def no_status(*_args: object) -> None:
        raise AssertionError("the status of a parked execution was read")

    monkeypatch.setattr(outcomes, "execution_status", no_status)
    monkeypatch.setattr(notifications, "execution_status", no_status)
    assert record_run_end(records, sqlite_store, run) is False
    scan = EndedRunScan.from_json(None)
    assert enqueue_recently_ended(records, sqlite_store, DeliveryOutbox(sqlite_store), scan) == 0
    assert run_id in scan.handled and DeliveryOutbox(sqlite_store).deliveries("exec-1") == []
    assert not ExecutionOutcomes(sqlite_store).claimed("exec-1").ended


def test_a_finished_job_asks_for_one_continuation_that_carries_the_provider_job(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs
) -> None:
    run_id = parked_run(records, sqlite_store)
    assert poll_waits(records, sqlite_store, lambda _name: jobs, sweep=True).continued == []
    jobs.ended.add("p-exec-1")
    ProviderWaits(sqlite_store).check_again("replicate", "p-exec-1", 0)
    report = poll_waits(records, sqlite_store, lambda _name: jobs, sweep=True)
    assert report.finished == ["replicate p-exec-1"] and report.continued == ["exec-1"]
    assert continue_parked(records, sqlite_store, "exec-1") is None, "asked for once"
    [attempt] = AttemptStore(sqlite_store).of_execution("exec-1")
    assert (attempt.number, attempt.reason, attempt.previous_run_id) == (2, AttemptReason.CONTINUE, run_id)
    runs = ExecutionRuns.of(records, records.runs[-1])
    tags = attempt_run_tags(attempt, records.runs[-1], {}, runs)
    assert tags[PROVIDER_JOB_TAG_PREFIX + "gen"] == "p-exec-1", "the continuation recalls the job, never creates it"
    # The continuation: the execution's deadline counts from the first run, and continuations are no resumes.
    records.add_run(
        "exec-1", PLAN, RunState.STARTED, run_id="run-2", tags=dict(tags) | {ATTEMPT_TAG: "2"}, started_at=time.time()
    )
    runs = ExecutionRuns.of(records, records.runs[-1])
    assert runs.resumes_in_a_row() == 0 and len(runs.chained()) == 1
    assert execution_status(records, sqlite_store, "exec-1").nodes["gen"].state is NodeState.PENDING


def test_a_wake_up_that_read_the_parked_run_before_its_continuation_began_asks_for_no_second_one(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider's webhook and the poller both wake an execution. One read the newest run (parked) just before
    the continuation's run was created: the runs it then counts stop at the one it read (CI2: a third attempt)."""
    parked_run(records, sqlite_store)
    ProviderWaits(sqlite_store).finish("replicate", "p-exec-1")
    assert continue_parked(records, sqlite_store, "exec-1") is not None
    parked = records.runs[-1]
    records.add_run("exec-1", PLAN, RunState.STARTED, run_id="run-2", tags={ATTEMPT_TAG: "2"}, started_at=time.time())
    assert ExecutionRuns.of(records, parked).attempt == 1
    monkeypatch.setattr(records, "find_run", lambda _execution_id: parked)  # as read a moment before
    assert continue_parked(records, sqlite_store, "exec-1") is None
    assert [attempt.number for attempt in AttemptStore(sqlite_store).of_execution("exec-1")] == [2]


LINEAGE = "cd" * 32


def state_of(store: SubmissionStore, provider: str, job_id: str) -> WaitState:
    wait = ProviderWaits(store).get(provider, job_id)
    assert wait is not None
    return wait.state


def following_run(records: MemoryRunRecords, sqlite_store: SubmissionStore, *, holder: bool = True) -> tuple[str, str]:
    """exec-1 parked on replicate job p-exec-1 holding lineage LINEAGE (unless there already); another execution's
    node of the same lineage parked on a follow of it, as `single_flight` does. (its execution id, its follow)."""
    if holder:
        parked_run(records, sqlite_store)
        NodeResultIndex(sqlite_store).claim("default", LINEAGE, execution_id="exec-1", node_id="gen", run_id="run-1")
    follower = sqlite_store.submit(PLAN)[0].execution_id
    tags = {PARKED_TAG_PREFIX + "gen": "replicate p-exec-1"}
    now = time.time()
    run = records.add_run(follower, PLAN, RunState.SUCCESS, tags=tags, started_at=now - 2, ended_at=now - 1)
    job_id = follow_job_id(LINEAGE, follower, "gen")
    ProviderWaits(sqlite_store).park(
        SAME_LINEAGE, job_id, execution_id=follower, node_id="gen", run_id=run.run_id, check_in=0
    )
    return follower, job_id


def test_a_follow_of_another_executions_parked_node_continues_once_its_result_is_recorded(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs
) -> None:
    follower, follow = following_run(records, sqlite_store)
    waits = ProviderWaits(sqlite_store)
    node = execution_status(records, sqlite_store, follower).nodes["gen"]
    assert node.state is NodeState.WAITING and node.provider_job is not None
    assert (node.provider_job.provider, node.provider_job.id) == ("replicate", "p-exec-1"), "the job it waits on"

    def poll() -> list[str]:
        waits.check_again(SAME_LINEAGE, follow, 0)
        return poll_waits(records, sqlite_store, lambda _name: jobs, sweep=False).continued

    assert poll() == [] and jobs.checked == ["p-exec-1"], "a follow is never asked of a provider"
    jobs.ended.add("p-exec-1")
    waits.check_again("replicate", "p-exec-1", 0)
    assert poll() == ["exec-1"], "the holder's job ended: the holder goes on, the follower waits for its result"
    index = NodeResultIndex(sqlite_store)
    index.record(CachedNode("default", LINEAGE, "exec-1", "gen", "generateVideo", "run-1", {"url": "file:///v.mp4"}))
    waits.collect_node("exec-1", "gen")
    assert poll() == [follower]
    [attempt] = AttemptStore(sqlite_store).of_execution(follower)
    assert attempt.reason is AttemptReason.CONTINUE
    assert state_of(sqlite_store, SAME_LINEAGE, follow) is WaitState.COLLECTED, "taken by the continuation it asked for"
    # The continuation finds the lineage parked again (another take): the same follow waits again.
    waits.park(SAME_LINEAGE, follow, execution_id=follower, node_id="gen", run_id="run-3", check_in=0)
    assert state_of(sqlite_store, SAME_LINEAGE, follow) is WaitState.WAITING


def test_a_follow_ends_when_its_holder_no_longer_waits_and_its_cancel_leaves_the_holders_job_alone(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    follower, follow = following_run(records, sqlite_store)
    monkeypatch.setattr("video_pipelines.executions.lifecycle.provider_jobs", lambda _name: jobs)
    assert cancel(records, sqlite_store, follower).state is ExecutionState.CANCELED
    assert jobs.canceled == [] and state_of(sqlite_store, "replicate", "p-exec-1") is WaitState.WAITING
    assert state_of(sqlite_store, SAME_LINEAGE, follow) is WaitState.CANCELED
    # Retried, its node parks on the same follow again.
    ProviderWaits(sqlite_store).park(SAME_LINEAGE, follow, execution_id=follower, node_id="gen", run_id="r", check_in=9)
    assert state_of(sqlite_store, SAME_LINEAGE, follow) is WaitState.WAITING
    ProviderWaits(sqlite_store).cancel_execution(follower)
    # Another follower, whose holder is canceled: it takes the lineage over in its continuation.
    _, second = following_run(records, sqlite_store, holder=False)
    assert cancel(records, sqlite_store, "exec-1").state is ExecutionState.CANCELED
    assert jobs.canceled == ["p-exec-1"]
    assert poll_waits(records, sqlite_store, lambda _name: jobs, sweep=False).finished == [f"{SAME_LINEAGE} {second}"]


def test_the_deadline_counts_parked_time_and_ends_the_execution_with_its_job_canceled(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs
) -> None:
    parked_run(records, sqlite_store, plan={**PLAN, "timeoutSeconds": 60})
    left = deadline_left(ExecutionRuns.of(records, records.runs[-1]))
    assert left is not None and 55 < left <= 58, "parked time counts"
    assert poll_waits(records, sqlite_store, lambda _name: jobs, sweep=True).ended == {}
    records.runs[-1] = replace(records.runs[-1], started_at=time.time() - 120)
    report = poll_waits(records, sqlite_store, lambda _name: jobs, sweep=True)
    assert report.ended == {"exec-1": "deadline exceeded while parked"}
    assert jobs.canceled == ["p-exec-1"]
    status = execution_status(records, sqlite_store, "exec-1")
    assert status.state is ExecutionState.FAILED
    assert (
        status.error == "deadline exceeded after 60 s (timeoutSeconds); unfinished: gen (waiting on replicate p-exec-1)"
    )
    [delivery] = DeliveryOutbox(sqlite_store).deliveries("exec-1")
    assert delivery.event == "failed"
    assert ProviderWaits(sqlite_store).of_execution("exec-1") == []


def test_cancel_of_a_parked_execution_cancels_its_job_at_once_and_stops_its_continuation(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, monkeypatch: pytest.MonkeyPatch, jobs: FakeJobs
) -> None:
    parked_run(records, sqlite_store)
    jobs.ended.add("p-exec-1")
    ProviderWaits(sqlite_store).finish("replicate", "p-exec-1")
    assert continue_parked(records, sqlite_store, "exec-1") is not None  # asked for, not launched yet
    monkeypatch.setattr("video_pipelines.executions.lifecycle.provider_jobs", lambda _name: jobs)
    status = cancel(records, sqlite_store, "exec-1")
    assert status.state is ExecutionState.CANCELED and status.error == "the execution was canceled"
    assert jobs.canceled == ["p-exec-1"]
    assert [attempt.state for attempt in AttemptStore(sqlite_store).of_execution("exec-1")] == [AttemptState.CANCELED]
    assert records.runs[-1].tags[PARKED_END_TAG] == "canceled"
    assert not end_parked(records, sqlite_store, records.find_run("exec-1"), "canceled", lambda _name: jobs), (
        "ended once"
    )
    assert [d.event for d in DeliveryOutbox(sqlite_store).deliveries("exec-1")] == ["canceled"]


def test_a_cancel_the_api_cannot_send_is_left_to_the_poller(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs
) -> None:
    parked_run(records, sqlite_store)

    def not_here(_name: str) -> FakeJobs:
        from video_pipelines.errors import ProviderError

        raise ProviderError("provider 'replicate' is not configured in this deployment")

    assert end_parked(records, sqlite_store, records.find_run("exec-1"), "canceled", not_here)
    [wait] = ProviderWaits(sqlite_store).of_execution("exec-1")
    assert wait.state is WaitState.CANCELING
    assert poll_waits(records, sqlite_store, lambda _name: jobs, sweep=False).canceled == ["replicate p-exec-1"]
    assert jobs.canceled == ["p-exec-1"] and ProviderWaits(sqlite_store).of_execution("exec-1") == []


def test_waits_of_an_execution_that_ended_otherwise_are_canceled(
    records: MemoryRunRecords, sqlite_store: SubmissionStore, jobs: FakeJobs
) -> None:
    run_id = parked_run(records, sqlite_store)
    records.add_run("exec-1", PLAN, RunState.FAILURE, run_id="run-2", tags={PREVIOUS_RUN_TAG: run_id})
    records.failures["run-2"] = "merge failed"
    assert poll_waits(records, sqlite_store, lambda _name: jobs, sweep=True).canceled == ["replicate p-exec-1"]


def test_the_wait_store_moves_each_wait_once(sqlite_store: SubmissionStore) -> None:
    waits = ProviderWaits(sqlite_store)
    first = waits.park("replicate", "p1", execution_id="e", node_id="gen", run_id="r1", check_in=30)
    assert first.state is WaitState.WAITING and waits.due() == []
    assert waits.due(datetime.now(UTC) + timedelta(seconds=31)) == [first]
    assert waits.finish("replicate", "p1") and not waits.finish("replicate", "p1")
    again = waits.park("replicate", "p1", execution_id="e", node_id="gen", run_id="r2", check_in=0)
    assert (again.state, again.run_id, again.since) == (WaitState.WAITING, "r2", first.since)
    assert waits.collect_node("e", "gen") and waits.of_execution("e") == []
    assert waits.get("replicate", "p1") is not None


def _signed(body: dict[str, Any], secret: str = SIGNING_SECRET, at: datetime | None = None) -> dict[str, str]:
    data = json.dumps(body)
    moment = at or datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", moment, data)
    return {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(int(moment.timestamp())), "Webhook-Signature": signature}


def test_replicate_webhooks_are_taken_only_when_signed_with_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    prediction = {"id": "p1", "status": "succeeded", "output": ["https://replicate.delivery/x.mp4"]}
    body = json.dumps(prediction).encode()
    with pytest.raises(CallbackRefused, match="REPLICATE_WEBHOOK_SIGNING_SECRET"):
        job_news("replicate", body, _signed(prediction))
    monkeypatch.setenv("REPLICATE_WEBHOOK_SIGNING_SECRET", SIGNING_SECRET)
    news = job_news("replicate", body, _signed(prediction))
    assert (news.provider, news.job_id, news.ended) == ("replicate", "p1", True)
    processing = {"id": "p1", "status": "processing"}
    assert not job_news("replicate", json.dumps(processing).encode(), _signed(processing)).ended
    other = "whsec_" + base64.b64encode(b"another-secret-of-thirty-two-b!!").decode()
    for headers in ({}, _signed(prediction, other), _signed(prediction, at=datetime.now(UTC) - timedelta(hours=1))):
        with pytest.raises(CallbackRefused):
            job_news("replicate", body, headers)
    with pytest.raises(CallbackRefused, match="not a prediction"):
        job_news("replicate", b"[]", _signed([]))  # type: ignore[arg-type]
    with pytest.raises(UnknownCaller):
        job_news("runway", body, _signed(prediction))


def test_a_fal_request_parks_its_signed_webhook_finds_the_wait_and_the_continuation_collects_it(
    sqlite_store: SubmissionStore, clip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_PUBLIC_URL", "https://videos.example.com")
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setattr(callbacks, "FAL_KEYS", FalKeys())
    api, signer = FakeFal(auth=f"Key {TOKEN}", output=clip).start(), FalSigner().start()
    monkeypatch.setenv("FAL_JWKS_URL", signer.url)
    try:
        fal = FalProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)
        ledger, out = RecordingLedger(api), tmp_path / "gen.mp4"
        with parking_allowed(), pytest.raises(Parked) as parked:
            fal.generate(GENERATION, out, timeout=30, ledger=ledger)
        job_id = parked.value.job_id
        assert (parked.value.provider, job_id) == ("fal", ledger.job_id) and not out.exists()
        assert len(api.seen("status")) == 1 and not api.seen("cancel"), "parked after one check, the request runs on"
        waits = ProviderWaits(sqlite_store)
        waits.park("fal", job_id, execution_id="exec-1", node_id="gen", run_id="run-1", check_in=poll_seconds("fal"))
        assert not fal.job_finished(job_id), "the poller's check: still running"

        # fal calls the webhook URL the request was queued with, signed: its news names the wait.
        hook = parse_qs(api.seen("create")[0].path.partition("?")[2])["fal_webhook"][0]
        path, _, query = hook.partition("?")
        assert path == "https://videos.example.com/api/providers/fal/webhook"
        request_id = job_id.rpartition("/")[2]
        body = fal_result(request_id)
        news = job_news("fal", body, signer.headers(body, request_id), dict(parse_qsl(query)))
        assert news.ended and waits.get(news.provider, news.job_id) is not None
        assert waits.finish(news.provider, news.job_id)

        # The continuation recalls the request (parking allowed: a finished job does not park) and collects it.
        with parking_allowed():
            fal.generate(GENERATION, out, timeout=30, ledger=RecordingLedger(api, job_id))
        assert out.read_bytes() == clip
        assert len(api.seen("create")) == 1, "the request was queued twice"
        assert fal.job_finished(job_id)
    finally:
        api.stop()
        signer.stop()


def test_vertex_calls_nobody_back_so_its_waits_are_polled_often_even_with_a_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_PUBLIC_URL", "https://videos.example.com")
    assert provider_webhook_url("fal") == "https://videos.example.com/api/providers/fal/webhook"
    assert provider_webhook_url("google-cloud") is None
    assert poll_seconds("google-cloud") == 5.0 and poll_seconds("fal") == 60.0
