"""Remote nodes side by side in one run: each starts ahead of its step, against a Replicate-protocol server.

The server (`TimedReplicate`, on 127.0.0.1) keeps every prediction busy for real time, and
records when each was created and when it ended (succeeded, failed or canceled), so the tests
read overlap, limits and cancels from what the provider saw. The runs are `execute_in_process`
on the embedded instance, with real MP4s.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.executions import execution_status
from video_pipelines.nodes.head_start import HeadStarts, Log, await_result
from video_pipelines.nodes.ledger import RunTagLedger
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.resources.artifacts import ReplicateResource
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import parse_plan
from video_pipelines.providers.http import Abandoned, sleep_interruptibly

from ..conftest import MediaServer
from ..media import local_path_of, make_tone
from ..unit.test_providers_replicate_fal import TOKEN, Answer, FakeReplicate, Job, serving_replicate
from .harness import node_results

# 6 s keeps the suite fast and still dwarfs a run's own overhead.
PREDICTION_SECONDS = float(os.environ.get("VIDEO_PIPELINES_TEST_PREDICTION_SECONDS", "6"))
POLL_SECONDS = 0.2


LIP_SYNC = "lip sync"  # the label of a lip-sync prediction (it has no prompt)


@dataclass
class TimedReplicate(FakeReplicate):
    """Predictions that take `seconds` from their creation (`seconds_for[label]` if given), `failing` ones fail.

    A prediction's label is its prompt (`LIP_SYNC` for a lip sync).
    """

    seconds: float = PREDICTION_SECONDS
    seconds_for: dict[str, float] = field(default_factory=dict)
    failing: tuple[str, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)

    def created(self, job: Job) -> Answer:  # under the server's lock, right after the request was recorded
        self.prompts[job.id] = self.requests[-1].body["input"].get("prompt", LIP_SYNC)
        self.created_at[job.id] = time.monotonic()
        return super().created(job)

    def answer(self, kind: str, job: Job) -> Answer:
        if kind == "cancel":
            self.ended_at.setdefault(job.id, time.monotonic())
            return super().answer(kind, job)
        job.polls += 1
        if job.canceled:
            return 200, {}, self.prediction(job, "canceled")
        if time.monotonic() - self.created_at[job.id] < self.seconds_for.get(self.prompts[job.id], self.seconds):
            return 200, {}, self.prediction(job, "processing")
        self.ended_at.setdefault(job.id, time.monotonic())
        if self.prompts[job.id] in self.failing:
            return 200, {}, self.prediction(job, "failed", error="NSFW content detected")
        return 200, {}, self.prediction(job, "succeeded", output=[self.file_url()])

    def job_for(self, prompt: str) -> str:
        [job_id] = [job_id for job_id, given in self.prompts.items() if given == prompt]
        return job_id

    def creates(self) -> list[float]:
        return sorted(self.created_at.values())


@pytest.fixture
def replicate(clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[TimedReplicate]:
    with serving_replicate(TimedReplicate(auth=f"Bearer {TOKEN}", output=clip), monkeypatch) as api:
        yield api


def remote_gen(node_id: str, **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "generateVideo",
        "params": {"prompt": f"prompt of {node_id}", "duration": 1, "provider": "replicate", **params},
    }


def run_plan(plan: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(parse_plan(plan))})
    return execute_plan_job().execute_in_process(
        run_config=config,
        instance=instance,
        raise_on_error=False,
        resources={"replicate": ReplicateResource(poll_interval_seconds=POLL_SECONDS)},
    )


def logs_of(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(run_id))


THREE_AND_A_MERGE = {
    "jobs": [
        remote_gen("scene_1"),
        remote_gen("scene_2"),
        remote_gen("scene_3"),
        {"id": "final", "type": "merge", "params": {}, "dependsOn": ["scene_1", "scene_2", "scene_3"]},
    ]
}


def test_three_remote_generations_overlap_and_the_merge_follows(dagster_home: Path, replicate: TimedReplicate) -> None:
    with dg.DagsterInstance.get() as instance:
        result = run_plan(THREE_AND_A_MERGE, instance)
        assert result.success, logs_of(instance, result.run_id)
        logs = logs_of(instance, result.run_id)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
    creates = replicate.creates()
    assert len(creates) == 3
    # What the provider saw, not a wall clock: every prediction was created before any of them ended.
    assert creates[-1] < min(replicate.ended_at.values()), "the predictions ran one after another"
    videos = node_results(result)
    merged = probe(local_path_of(videos["final"].url))
    assert abs(merged.duration - 3) < 0.2 and merged.video_codec == "h264"
    for scene in ("scene_1", "scene_2", "scene_3"):
        # Each job id on the run's tags (the ledger a retried step resumes from), though written at once.
        assert run.tags[f"video/provider_job/{scene}"] == replicate.job_for(f"prompt of {scene}")
        assert f"{scene}: started ahead of its step: its inputs all exist" in logs
        assert f"{scene}: [started ahead, +" in logs  # its lines, passed on by its step


def test_a_remote_node_starts_as_soon_as_its_own_input_exists(
    dagster_home: Path, replicate: TimedReplicate, media_server: MediaServer
) -> None:
    make_tone(media_server.root / "voice.mp3", 440, 1)
    replicate.seconds_for = {"prompt of quick": 1.0, "prompt of slow": 5.0, LIP_SYNC: 1.0}
    plan = {
        "jobs": [
            remote_gen("quick"),
            remote_gen("slow"),
            {
                "id": "voiced",
                "type": "lipSync",
                "params": {"audioUrl": media_server.url("voice.mp3"), "provider": "replicate"},
                "dependsOn": ["quick"],
            },
            {"id": "final", "type": "merge", "params": {}, "dependsOn": ["voiced", "slow"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan(plan, instance)
        assert result.success, logs_of(instance, result.run_id)
    quick, slow, voiced = (replicate.job_for(label) for label in ("prompt of quick", "prompt of slow", LIP_SYNC))
    # `voiced` is at level 1, yet it started when `quick` ended, before `slow` (and so level 0) was done.
    assert replicate.ended_at[quick] <= replicate.created_at[voiced] < replicate.ended_at[slow]
    assert abs(probe(local_path_of(node_results(result)["final"].url)).duration - 2) < 0.2


def test_a_failed_remote_node_cancels_the_predictions_started_ahead(
    dagster_home: Path, replicate: TimedReplicate
) -> None:
    # Left alone, scene_1 and scene_2 would take a minute; scene_3 fails after a second.
    replicate.seconds = 60
    replicate.seconds_for = {"prompt of scene_3": 1.0}
    replicate.failing = ("prompt of scene_3",)
    with dg.DagsterInstance.get() as instance:
        result = run_plan(THREE_AND_A_MERGE, instance)
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
    assert not result.success and status["status"] == "failed"
    assert len(replicate.jobs) == 3  # nothing created twice, nothing created after the failure
    for scene in ("scene_1", "scene_2"):
        job = replicate.job_for(f"prompt of {scene}")
        assert replicate.jobs[job].canceled, f"{scene}'s prediction left running"
        assert replicate.ended_at[job] - replicate.created_at[job] < replicate.seconds, "awaited, not canceled"
        assert f"{scene} (generateVideo) canceled: scene_3 failed, so the run fails" in status["error"]
    assert "scene_3 (generateVideo) failed: replicate prediction" in status["error"]
    assert "NSFW content detected" in status["error"]
    assert len(replicate.seen("cancel")) == 2


def test_a_transient_failure_of_a_node_started_ahead_resumes_its_prediction(
    dagster_home: Path, replicate: TimedReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five 503s in a row would open replicate's circuit (the default threshold): the node would wait for it.
    monkeypatch.setenv("VIDEO_PIPELINES_BREAKER_FAILURES", "100")
    replicate.seconds = 2
    # Five 503s use up the first attempt's HTTP retries: the step fails transiently and is retried.
    replicate.script["status"] = [(503, {"Retry-After": "0"}, {"detail": "busy"})] * 5
    plan = {
        "jobs": [
            remote_gen("gen"),
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan(plan, instance)
        logs = logs_of(instance, result.run_id)
        assert result.success, logs
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
    [job_id] = list(replicate.jobs)  # exactly one create: the retried step resumed it
    assert len(replicate.seen("create")) == 1 and not replicate.jobs[job_id].canceled
    assert run.tags["video/provider_job/gen"] == job_id
    assert "gen: started ahead of its step: its inputs all exist" in logs
    assert "gen: transient failure, attempt 1: replicate:" in logs
    # Retried inside its step (not by Dagster, which would queue it behind the steps that need it).
    assert not [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"]
    assert probe(local_path_of(node_results(result)["square"].url)).width == 90


def test_a_node_whose_step_began_is_never_started_ahead() -> None:
    started = HeadStarts()
    assert started.take("gen", key=()) is None  # its step runs it itself
    assert not started.start("gen", (), lambda log, warn: pytest.fail("ran twice"), then=lambda run, log: None)
    assert started.close() == []


def test_closing_abandons_the_work_started_ahead() -> None:
    started = HeadStarts(join_timeout=5)
    waiting = threading.Event()

    def work(log: Log, warn: Log) -> NodeRun:
        waiting.set()
        while True:
            sleep_interruptibly(0.05)

    assert started.start("gen", (), work, then=lambda run, log: None)
    assert waiting.wait(5)
    began = time.monotonic()
    assert started.close() == ["gen"]
    assert time.monotonic() - began < 1
    ahead = started.take("gen", ())
    assert ahead is not None
    with pytest.raises(Abandoned):
        await_result(ahead, log=lambda line: None, warn=lambda line: None)


def test_provider_jobs_remembered_at_once_all_stay_on_the_run(dagster_home: Path) -> None:
    # Dagster writes run tags whole (read, merge, write): unserialized, most of these writes were lost.
    lock = threading.Lock()

    def remember(ledger: RunTagLedger, job_id: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        ledger.remember(job_id)

    with dg.DagsterInstance.get() as instance:
        for _ in range(5):
            run = dg.DagsterRun(job_name="execute_plan", run_id=str(uuid.uuid4()))
            instance.add_run(run)
            ledgers = [RunTagLedger(instance, run.run_id, f"scene_{i}", lock) for i in range(3)]
            barrier = threading.Barrier(len(ledgers))
            threads = [
                threading.Thread(target=remember, args=(ledger, f"job-{i}", barrier))
                for i, ledger in enumerate(ledgers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert [ledger.recall() for ledger in ledgers] == ["job-0", "job-1", "job-2"]
