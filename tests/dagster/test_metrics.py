"""`/metrics`: a known run, known submissions and webhook attempts, scraped and parsed with prometheus_client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import DagsterEvent
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils import get_run_crash_explanation
from prometheus_client.parser import text_string_to_metric_families

from video_pipelines.doors import client
from video_pipelines.errors import ProviderHttpError
from video_pipelines.executions import (
    EndedRunScan,
    NodeRecord,
    RunState,
    admit,
    enqueue_recently_ended,
    record_end,
    record_end_quietly,
    record_run_end,
    record_start,
    submit,
    sweep_submission_ends,
)
from video_pipelines.executions.metrics import CONTENT_TYPE_LATEST, render_metrics
from video_pipelines.executions.notifications import RECENT_SECONDS
from video_pipelines.executions.records import ATTEMPT_REASON_TAG, ATTEMPT_TAG
from video_pipelines.net import parse_allowed_hosts
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.sensors.plans import (
    resume_lost_runs,
    webhook_on_completed,
    webhook_on_failed,
    webhook_on_started,
)
from video_pipelines.plan import parse_plan
from video_pipelines.providers.base import GenerationRequest, NoLedger
from video_pipelines.providers.http import HttpPolicy
from video_pipelines.providers.replicate import ReplicateProvider
from video_pipelines.submissions import AttemptReason, AttemptStore, ExecutionOutcomes, OutcomeTally, SubmissionStore
from video_pipelines.submissions.counters import (
    NODE_SECONDS,
    NODE_SECONDS_BUCKETS,
    SPEND_USD,
    SUBMIT_TO_START_SECONDS,
    Counters,
    count_node_work,
    counting_provider_errors,
)
from video_pipelines.submissions.schema import COUNTERS_TABLE
from video_pipelines.submissions.store import execution_created_at
from video_pipelines.vocabulary import NodeState
from video_pipelines.webhooks import AttemptOutcome, DeliveryOutbox, RetrySchedule

from ..conftest import STORE_KEY, UNAVAILABLE, VOICE, MediaServer
from ..memory_records import MemoryRunRecords, video
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate, serving_replicate
from ..unit.test_submissions_store import database_at
from .harness import run_plan_in_process
from .test_retry import launch, sensor_tick, voiced_plan
from .test_webhook_events import run_event

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "clip", "type": "generateVideo", "params": {"prompt": "metrics", "duration": 1, "resolution": 64}},
        {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["clip"]},
    ]
}
LabelSet = tuple[tuple[str, str], ...]


class Scrape:
    """One scrape, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, LabelSet], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def series(self, name: str) -> dict[LabelSet, float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}


def scrape(store: SubmissionStore, records: Any) -> Scrape:
    return Scrape(render_metrics(store, records).decode("utf-8"))


@pytest.fixture
def deployment(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    """A Dagster instance and a submission store on `db_url`'s kind of database, as the run's resources find them."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("VIDEO_PIPELINES_STORAGE_URL", raising=False)
    if db_url.startswith("postgresql"):
        # Dagster's storage and the submission store in one PostgreSQL database, as in production.
        monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", db_url)
    else:
        # The embedded default: SQLite files in DAGSTER_HOME.
        monkeypatch.delenv("VIDEO_PIPELINES_DATABASE_URL", raising=False)
    with client.deployment() as opened:
        yield opened


def work_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Each node's work seconds, as its materialization recorded them."""
    seconds = {}
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        seconds[str(metadata["node_id"].value)] = float(metadata["work_seconds"].value)  # type: ignore[arg-type]
    return seconds


def queue_a_run(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> None:
    """A run of execute_plan waiting in Dagster's run queue (no daemon dequeues it here), with `tags`."""
    config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(parse_plan(PLAN))}).to_config_dict()
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="video_pipelines.orchestration.definitions", attribute="defs")
    )
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "execute_plan")
    run = instance.create_run_for_job(execute_plan_job(), run_config=config, remote_job_origin=origin, tags=tags)
    # What Dagster's QueuedRunCoordinator.submit_run does with a new run.
    instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)
    queued = instance.get_run_by_id(run.run_id)
    assert queued is not None and queued.status == dg.DagsterRunStatus.QUEUED


def record_attempts(store: SubmissionStore, execution_id: str) -> None:
    """Webhook attempts: one delivery 503, timeout, 200; another 404 once."""
    outbox = DeliveryOutbox(store)
    schedule = RetrySchedule(delays=(0.0, 0.0, 0.0))
    first = outbox.enqueue(
        execution_id=execution_id, event="completed", url="https://hooks.example.com/a", body=b"{}", secret_source=None
    )
    for outcome in (
        AttemptOutcome(status_code=503),
        AttemptOutcome(error="timed out"),
        AttemptOutcome(status_code=200),
    ):
        first = outbox.record_attempt(first, outcome, schedule=schedule)
    second = outbox.enqueue(
        execution_id=execution_id, event="failed", url="https://hooks.example.com/b", body=b"{}", secret_source=None
    )
    outbox.record_attempt(second, AttemptOutcome(status_code=404), schedule=schedule)


def test_metrics_after_a_known_run(deployment: client.Deployment) -> None:
    store, instance = deployment.store, deployment.instance
    result = run_plan_in_process(PLAN, instance)
    assert result.success
    pending, _ = store.submit(PLAN)
    rejected, _ = store.submit(PLAN)
    canceled, _ = store.submit(PLAN)
    assert store.mark_rejected(rejected.execution_id, "plan.baseExecutionId: no execution exec_x")
    assert store.cancel_pending(canceled.execution_id)
    queue_a_run(instance)
    record_attempts(store, pending.execution_id)
    # What observes each start and end (the run-status sensors, the plan sensor, cancel) claims it, once.
    observe(deployment, result.run_id, daemons=2)
    for ended in (rejected.execution_id, canceled.execution_id):
        record_end(deployment.records, store, ended)

    metrics = scrape(store, deployment.records)

    assert metrics.value("video_pipelines_executions_submitted_total") == 3
    # The in-process run started and completed; the queued one has not started.
    assert metrics.value("video_pipelines_executions_started_total") == 1
    assert metrics.series("video_pipelines_executions_finished_total") == {
        (("status", "completed"),): 1,
        (("status", "failed"),): 1,  # the rejected submission
        (("status", "canceled"),): 1,  # the submission canceled while pending
    }
    assert set(metrics.series("video_pipelines_execution_attempts_total").values()) == {0}
    assert metrics.value("video_pipelines_pending_submissions") == 1
    assert metrics.value("video_pipelines_queued_runs") == 1
    assert metrics.types["video_pipelines_pending_submissions"] == "gauge"

    # One observation per node that ran, its sum the seconds the node's materialization recorded.
    assert metrics.types[NODE_SECONDS] == "histogram"
    seconds = work_seconds(result)
    for node_id, operation in (("clip", "generateVideo"), ("square", "reframe")):
        series = {"operation": operation, "provider": "local"}
        assert metrics.value(f"{NODE_SECONDS}_count", **series) == 1
        assert metrics.value(f"{NODE_SECONDS}_sum", **series) == pytest.approx(seconds[node_id])
        assert seconds[node_id] > 0
        buckets = {float(labels["le"]): value for labels, value in _buckets(metrics, series)}
        assert sorted(buckets) == [*NODE_SECONDS_BUCKETS, float("inf")]
        assert buckets == {bound: 1.0 if seconds[node_id] <= bound else 0.0 for bound in buckets}
    assert sum(metrics.series(f"{NODE_SECONDS}_count").values()) == 2

    assert metrics.series("video_pipelines_webhook_attempts_total") == {
        (("outcome", "delivered"),): 1,
        (("outcome", "http_error"),): 2,
        (("outcome", "error"),): 1,
    }
    assert metrics.types["video_pipelines_provider_http_errors"] == "counter"
    assert metrics.series("video_pipelines_provider_http_errors_total") == {}


def _buckets(metrics: Scrape, series: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    found = []
    for labels, value in metrics.series(f"{NODE_SECONDS}_bucket").items():
        named = dict(labels)
        if {name: named[name] for name in series} == series:
            found.append((named, value))
    return found


def test_spend_and_submit_to_start_latency_are_counted(store: SubmissionStore) -> None:
    submission, _created = store.submit(PLAN)
    created = execution_created_at(submission.execution_id)
    assert created is not None
    assert record_start(store, submission.execution_id, datetime.fromtimestamp(created + 1.5, UTC))
    assert not record_start(store, submission.execution_id)  # a start is counted once
    for operation, cost in (("generateVideo", 0.5), ("generateVideo", 0.25), ("reframe", 0.0)):
        count_node_work(store, operation, "replicate" if cost else None, 3.0, cost, warn=pytest.fail)

    metrics = scrape(store, MemoryRunRecords())
    assert metrics.types[SUBMIT_TO_START_SECONDS] == "histogram"
    assert metrics.value(f"{SUBMIT_TO_START_SECONDS}_count") == 1
    assert metrics.value(f"{SUBMIT_TO_START_SECONDS}_sum") == pytest.approx(1.5, abs=0.01)
    assert metrics.value(f"{SUBMIT_TO_START_SECONDS}_bucket", le="1.0") == 0
    assert metrics.value(f"{SUBMIT_TO_START_SECONDS}_bucket", le="2.0") == 1
    assert metrics.series(SPEND_USD) == {
        (("operation", "generateVideo"), ("provider", "replicate")): 0.75,
        (("operation", "reframe"), ("provider", "local")): 0.0,
    }
    assert metrics.value(f"{NODE_SECONDS}_count", operation="generateVideo", provider="replicate") == 2


def test_only_an_ended_execution_is_claimed_ended(store: SubmissionStore) -> None:
    records = MemoryRunRecords()
    for number, state in enumerate([*RunState, RunState.SUCCESS, RunState.FAILURE]):
        records.add_run(f"exec_{number}", PLAN, state)
    claimed = [record_end(records, store, f"exec_{number}") for number in range(len(records.runs))]
    assert sum(claimed) == 5 and not any(record_end(records, store, run.execution_id) for run in records.runs)
    metrics = scrape(store, records)
    assert metrics.series("video_pipelines_executions_finished_total") == {
        (("status", "completed"),): 2,
        (("status", "failed"),): 2,
        (("status", "canceled"),): 1,
    }
    assert metrics.value("video_pipelines_executions_started_total") == 0  # no start was observed
    assert metrics.value("video_pipelines_queued_runs") == 1
    assert metrics.value("video_pipelines_executions_submitted_total") == 0
    assert CONTENT_TYPE_LATEST.startswith("text/plain")


def test_counters_add_up_across_stores_and_threads(db_url: str) -> None:
    """Four stores (four engines, as four processes would have) adding at once: no increment is lost."""
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    adds, start = 25, threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def work(store: SubmissionStore) -> None:
        counters = Counters(store)
        start.wait()
        try:
            for number in range(adds):
                counters.add("video_pipelines_provider_http_errors_total", {"provider": "fal", "status": "502"})
                counters.observe(NODE_SECONDS, {"operation": "merge", "provider": "local"}, number % 5, (1.0, 2.0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        metrics = scrape(stores[0], MemoryRunRecords())
    finally:
        for store in stores:
            store.close()
    total = adds * len(stores)
    assert metrics.value("video_pipelines_provider_http_errors_total", provider="fal", status="502") == total
    series = {"operation": "merge", "provider": "local"}
    assert metrics.value(f"{NODE_SECONDS}_count", **series) == total
    # Values 0..4, each a fifth of the time: 0 and 1 are <= 1, 0..2 are <= 2.
    assert metrics.value(f"{NODE_SECONDS}_bucket", le="1.0", **series) == total * 2 / 5
    assert metrics.value(f"{NODE_SECONDS}_bucket", le="2.0", **series) == total * 3 / 5
    assert metrics.value(f"{NODE_SECONDS}_bucket", le="+Inf", **series) == total
    assert metrics.value(f"{NODE_SECONDS}_sum", **series) == len(stores) * sum(n % 5 for n in range(adds))


def test_a_provider_5xx_is_counted_by_provider_and_status(
    dagster_home: Path, clip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"prompt": "a fox", "duration": 1, "provider": "replicate"}
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": params}]}
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1)
    # The first poll fails with a 503 (retried at once, as its Retry-After asks), then the job succeeds.
    api.script["status"] = [(503, {"Retry-After": "0"}, {"detail": "upstream overloaded"})]
    with serving_replicate(api, monkeypatch), client.deployment() as target:
        result = run_plan_in_process(plan, target.instance)
        assert result.success
        metrics = scrape(target.store, target.records)
    assert len(api.seen("status")) >= 2
    assert metrics.series("video_pipelines_provider_http_errors_total") == {
        (("provider", "replicate"), ("status", "503")): 1
    }
    assert metrics.value(f"{NODE_SECONDS}_count", operation="generateVideo", provider="replicate") == 1


def test_provider_errors_are_counted_only_inside_the_block(store: SubmissionStore, clip: bytes, tmp_path: Path) -> None:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip).start()
    request = GenerationRequest(prompt="x", duration=1, width=64, height=36, aspect_ratio="16:9", seed=1, model=None)
    allowed = parse_allowed_hosts("127.0.0.1")
    provider = ReplicateProvider(TOKEN, base_url=api.base_url, allowed=allowed, http=HttpPolicy(max_attempts=1))
    refusal = (422, {}, {"detail": "prompt flagged"})
    warnings: list[str] = []
    try:
        api.script["create"] = [refusal]
        with pytest.raises(ProviderHttpError):
            provider.generate(request, tmp_path / "out.mp4", timeout=10, ledger=NoLedger())
        api.script["create"] = [refusal]
        with counting_provider_errors(store, warn=warnings.append), pytest.raises(ProviderHttpError):
            provider.generate(request, tmp_path / "out.mp4", timeout=10, ledger=NoLedger())
    finally:
        api.stop()
    assert warnings == []
    metrics = scrape(store, MemoryRunRecords())
    assert metrics.series("video_pipelines_provider_http_errors_total") == {
        (("provider", "replicate"), ("status", "422")): 1
    }


def test_a_metrics_write_that_fails_never_fails_the_node(dagster_home: Path) -> None:
    with client.deployment() as target:
        with target.store.engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {COUNTERS_TABLE}"))
        result = run_plan_in_process(PLAN, target.instance)
        logs = [entry for entry in target.instance.all_logs(result.run_id) if entry.level == 30]  # WARNING
    assert result.success
    messages = [entry.user_message for entry in logs]
    assert any("are not counted in the metrics" in message for message in messages), messages


# --- executions with more than one run: counted once, their attempts apart ---------------------------


def observe(target: client.Deployment, run_id: str, *, daemons: int = 1) -> None:
    """What each of `daemons` daemons does with a run that ended: its started sensor, its ended-run sensor, and
    for a failure the resume sensor."""
    run = target.instance.get_run_by_id(run_id)
    assert run is not None and run.is_finished
    kind, sensors = {
        dg.DagsterRunStatus.SUCCESS: (dg.DagsterEventType.RUN_SUCCESS, [webhook_on_completed]),
        dg.DagsterRunStatus.FAILURE: (dg.DagsterEventType.RUN_FAILURE, [webhook_on_failed, resume_lost_runs]),
    }[run.status]
    for _ in range(daemons):
        with run_event(target, run_id, dg.DagsterEventType.RUN_START) as context:
            webhook_on_started(context)
        for sensor in sensors:
            with run_event(target, run_id, kind) as context:
                sensor(context)


def lose_worker(target: client.Deployment, run_id: str) -> None:
    """Report the death of the run's process as Dagster's code server does (then the run counts as lost)."""
    run = target.instance.get_run_by_id(run_id)
    assert run is not None
    target.instance.report_engine_event(
        get_run_crash_explanation(prefix=f"Run execution process for {run_id}", exit_code=-9), run
    )


def resumed_and_retried(target: client.Deployment, voice: MediaServer, trace_parent: str | None = None) -> list[str]:
    """Two executions of real runs, each run observed as a daemon would, the last ones by two daemons:

    - the first run of `resumed` loses its worker and a resume completes it;
    - `retried` fails (its voice track answers 503), is counted failed, then a user's retry completes it.
    """
    resumed = submit(admit(voiced_plan(voice.url(VOICE))), target.store, trace_parent=trace_parent)
    [request] = sensor_tick(target)
    first = launch(target, request)
    assert not first.success
    lose_worker(target, first.run_id)
    observe(target, first.run_id)
    assert client.status(resumed, target=target)["status"] == "processing"  # its resume is due: no end yet
    voice.fail_next.pop(VOICE)
    [request] = sensor_tick(target)
    assert request.tags["video/attempt_reason"] == "resume"
    resumed_run = launch(target, request)
    assert resumed_run.success
    observe(target, resumed_run.run_id, daemons=2)

    voice.fail_next[VOICE] = list(UNAVAILABLE)
    other = voiced_plan(voice.url(VOICE))
    other["jobs"][0]["params"]["prompt"] = "a hare"  # not the first execution's nodes, which would be reused
    retried = submit(admit(other), target.store, trace_parent=trace_parent)
    [request] = sensor_tick(target)
    failed = launch(target, request)
    observe(target, failed.run_id)
    assert client.status(retried, target=target)["status"] == "failed"
    client.retry(retried, target=target)
    voice.fail_next.pop(VOICE)
    [request] = sensor_tick(target)
    retry_run = launch(target, request)
    assert retry_run.success
    observe(target, retry_run.run_id, daemons=2)
    assert [client.status(e, target=target)["status"] for e in (resumed, retried)] == ["completed", "completed"]
    return [resumed, retried]


def test_an_execution_is_counted_once_and_its_resumes_and_retries_apart(
    deployment: client.Deployment, voice: MediaServer, quick_retries: None
) -> None:
    resumed_and_retried(deployment, voice)
    metrics = scrape(deployment.store, deployment.records)

    # Four runs of two executions: each execution once, by how it first ended.
    assert metrics.value("video_pipelines_executions_submitted_total") == 2
    assert metrics.value("video_pipelines_executions_started_total") == 2
    assert metrics.series("video_pipelines_executions_finished_total") == {
        (("status", "completed"),): 1,  # resumed, then completed: one execution, completed
        (("status", "failed"),): 1,  # failed, then retried by a user: its retry is an attempt
        (("status", "canceled"),): 0,
    }
    attempts = {dict(labels)["reason"] + " " + dict(labels)["outcome"]: value
                for labels, value in metrics.series("video_pipelines_execution_attempts_total").items()}  # fmt: skip
    assert attempts == {
        "resume completed": 1,
        "resume failed": 0,
        "resume canceled": 0,
        "retry completed": 1,
        "retry failed": 0,
        "retry canceled": 0,
        "continue completed": 0,
        "continue failed": 0,
        "continue canceled": 0,
    }
    assert metrics.types["video_pipelines_execution_attempts"] == "counter"


def test_of_two_observers_racing_on_an_end_exactly_one_claims_it(db_url: str) -> None:
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    ExecutionOutcomes(stores[0]).note_caller("exec_b", "00f067aa0ba902b7")  # a row already there, unclaimed
    start, claimed = threading.Barrier(len(stores)), []
    at = datetime.now(UTC)

    def claim(store: SubmissionStore, execution_id: str) -> None:
        start.wait()
        if ExecutionOutcomes(store).claim_end(execution_id, "completed", at):
            claimed.append(execution_id)

    try:
        for execution_id in ("exec_a", "exec_b"):
            threads = [threading.Thread(target=claim, args=(store, execution_id)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert sorted(claimed) == ["exec_a", "exec_b"]
        outcomes = ExecutionOutcomes(stores[0])
        assert outcomes.tally() == OutcomeTally(started=0, finished={"completed": 2})
        assert not outcomes.claim_end("exec_a", "failed", at)  # the first end stays the end
        assert outcomes.parent_span_id("exec_b") == "00f067aa0ba902b7" and outcomes.parent_span_id("exec_a") is None
    finally:
        for store in stores:
            store.close()


def test_migration_7_keeps_the_attempts_and_adds_their_outcome_and_the_outcomes_table(db_url: str) -> None:
    at = "'2026-01-01 00:00:00+00'"
    database_at(
        db_url,
        6,
        "INSERT INTO video_pipelines_attempts (execution_id, number, reason, previous_run_id, state, run_id, "
        f"requested_at) VALUES ('exec_old', 2, 'resume', 'run-old', 'launched', 'run-new', {at})",
    )
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        attempts = AttemptStore(opened)
        [attempt] = attempts.of_execution("exec_old")
        assert (attempt.reason, attempt.run_id) == (AttemptReason.RESUME, "run-new")
        assert attempts.outcome_counts() == {}
        assert attempts.record_outcome("exec_old", 2, "completed")
        assert not attempts.record_outcome("exec_old", 2, "failed")  # its run ended once
        assert attempts.outcome_counts() == {("resume", "completed"): 1}
        outcomes = ExecutionOutcomes(opened)
        assert outcomes.tally() == OutcomeTally(started=0, finished={})
        assert outcomes.claim_start("exec_old", datetime.now(UTC)) and outcomes.claim_end(
            "exec_old", "completed", datetime.now(UTC)
        )
        assert outcomes.tally() == OutcomeTally(started=1, finished={"completed": 1})


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str, times: int = 1) -> list[str]:
    """Make `ExecutionOutcomes.<name>` raise as a database gone for a moment, `times` times, then write as usual
    (to the real database); the list grows by the id of each call that raised."""
    real = getattr(ExecutionOutcomes, name)
    failed: list[str] = []

    def claim(self: ExecutionOutcomes, execution_id: str, *args: Any) -> bool:
        if len(failed) < times:
            failed.append(execution_id)
            raise sa.exc.OperationalError("UPDATE video_pipelines_execution_outcomes", {}, Exception("server closed"))
        return bool(real(self, execution_id, *args))

    monkeypatch.setattr(ExecutionOutcomes, name, claim)
    return failed


def test_an_end_and_a_start_whose_claims_failed_are_counted_once_by_the_sweep(
    deployment: client.Deployment, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, instance = deployment.store, deployment.instance
    result = run_plan_in_process(PLAN, instance)
    assert result.success
    started, ended = fail_once(monkeypatch, "claim_start"), fail_once(monkeypatch, "claim_end", times=2)
    # Each sensor raises; the daemon would log it and move the sensor's cursor past the run all the same.
    with (
        run_event(deployment, result.run_id, dg.DagsterEventType.RUN_START) as context,
        pytest.raises(sa.exc.OperationalError),
    ):
        webhook_on_started(context)
    with (
        run_event(deployment, result.run_id, dg.DagsterEventType.RUN_SUCCESS) as context,
        pytest.raises(sa.exc.OperationalError),
    ):
        webhook_on_completed(context)
    assert started == ended == [result.run_id]
    assert scrape(store, deployment.records).series("video_pipelines_executions_finished_total") == {
        (("status", "completed"),): 0,
        (("status", "failed"),): 0,
        (("status", "canceled"),): 0,
    }

    scan, outbox = EndedRunScan(), DeliveryOutbox(store)
    enqueue_recently_ended(deployment.records, store, outbox, scan)  # the end's claim fails again: looked at again
    assert ended == [result.run_id] * 2 and "the end of run" in caplog.text
    assert result.run_id not in scan.handled
    enqueue_recently_ended(deployment.records, store, outbox, scan)
    enqueue_recently_ended(deployment.records, store, outbox, scan)
    observe(deployment, result.run_id, daemons=2)  # later observers find both claimed

    metrics = scrape(store, deployment.records)
    assert metrics.value("video_pipelines_executions_started_total") == 1
    assert metrics.series("video_pipelines_executions_finished_total") == {
        (("status", "completed"),): 1,
        (("status", "failed"),): 0,
        (("status", "canceled"),): 0,
    }


def test_the_end_of_a_rejected_submission_whose_claim_failed_is_counted_by_the_sweep(
    store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = MemoryRunRecords()
    rejected, _ = store.submit(PLAN)
    assert store.mark_rejected(rejected.execution_id, "plan.jobs[0].params.prompt: required")
    failed = fail_once(monkeypatch, "claim_end")
    record_end_quietly(records, store, rejected.execution_id)  # as the plan sensor does: logged, dropped
    assert failed == [rejected.execution_id]
    sweep_submission_ends(records, store, datetime.now(UTC) - timedelta(seconds=RECENT_SECONDS))
    sweep_submission_ends(records, store, datetime.now(UTC) - timedelta(seconds=RECENT_SECONDS))
    assert ExecutionOutcomes(store).tally() == OutcomeTally(started=0, finished={"failed": 1})


def test_an_attempt_canceled_after_every_video_was_made_records_completed(store: SubmissionStore) -> None:
    records = MemoryRunRecords()
    first = records.add_run("exec_late", PLAN, RunState.FAILURE, run_id="run-1")
    attempts = AttemptStore(store)
    attempts.request("exec_late", 2, AttemptReason.RETRY, previous_run_id=first.run_id)
    assert attempts.mark_launched("exec_late", 2, "run-2")
    nodes = [
        NodeRecord(node_id, operation, NodeState.COMPLETED, f"lineage-{node_id}", video(node_id), run_id="run-2")
        for node_id, operation in (("clip", "generateVideo"), ("square", "reframe"))
    ]
    # The cancel came as its last node ended: Dagster says canceled, every video is made.
    second = records.add_run(
        "exec_late",
        PLAN,
        RunState.CANCELED,
        run_id="run-2",
        nodes=nodes,
        tags={ATTEMPT_TAG: "2", ATTEMPT_REASON_TAG: "retry"},
    )
    assert record_run_end(records, store, second)
    assert not record_run_end(records, store, second)  # once
    assert attempts.outcome("exec_late", 2) == "completed"
    assert attempts.outcome_counts() == {("retry", "completed"): 1}
