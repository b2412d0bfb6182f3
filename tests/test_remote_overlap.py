"""Remote nodes side by side in one run: each starts ahead of its step, against a Replicate-protocol server.

The server (`TimedReplicate`, on 127.0.0.1) keeps every prediction busy for real time, and
records when each was created and when it ended (succeeded, failed or canceled), so the tests
read overlap, limits and cancels from what the provider saw. The runs are `execute_in_process`
on the embedded instance, with real MP4s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.demo import node_results
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.config import PlanConfig
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.provider_resources import ReplicateResource
from video_pipelines.plan import parse_plan

from .media import local_path_of
from .test_providers_replicate_fal import TOKEN, Answer, FakeReplicate, Job

# The figure is 15 s; 6 s keeps the suite fast and still dwarfs a run's own overhead.
PREDICTION_SECONDS = float(os.environ.get("VIDEO_PIPELINES_TEST_PREDICTION_SECONDS", "6"))
POLL_SECONDS = 0.2


@dataclass
class TimedReplicate(FakeReplicate):
    """Predictions that take `seconds` from their creation; those whose prompt is in `failing` end failed."""

    seconds: float = PREDICTION_SECONDS
    failing: tuple[str, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)

    def created(self, job: Job) -> Answer:  # under the server's lock, right after the request was recorded
        self.prompts[job.id] = self.requests[-1].body["input"]["prompt"]
        self.created_at[job.id] = time.monotonic()
        return super().created(job)

    def answer(self, kind: str, job: Job) -> Answer:
        if kind == "cancel":
            self.ended_at.setdefault(job.id, time.monotonic())
            return super().answer(kind, job)
        job.polls += 1
        if job.canceled:
            return 200, {}, self.prediction(job, "canceled")
        if time.monotonic() - self.created_at[job.id] < self.seconds:
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
    api = TimedReplicate(auth=f"Bearer {TOKEN}", output=clip)
    api.start()
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_API_BASE_URL", api.base_url)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    try:
        yield api
    finally:
        api.stop()


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
        began = time.monotonic()
        result = run_plan(THREE_AND_A_MERGE, instance)
        wall = time.monotonic() - began
        assert result.success, logs_of(instance, result.run_id)
        logs = logs_of(instance, result.run_id)
    creates = replicate.creates()
    durations = [replicate.ended_at[job] - replicate.created_at[job] for job in replicate.created_at]
    print(f"wall {wall:.1f} s for predictions of {PREDICTION_SECONDS:g} s (sum {sum(durations):.1f} s), "
          f"creates spread {creates[-1] - creates[0]:.2f} s")  # fmt: skip
    assert len(creates) == 3
    assert creates[-1] - creates[0] < 3.0, "the three predictions did not start together"
    assert wall < 1.7 * PREDICTION_SECONDS, f"{wall:.1f} s: the predictions ran one after another"
    videos = node_results(result)
    merged = probe(local_path_of(videos["final"].url))
    assert abs(merged.duration - 3) < 0.2 and merged.video_codec == "h264"
    for scene in ("scene_1", "scene_2", "scene_3"):
        assert f"{scene}: started ahead of its step (level 0)" in logs
        assert f"{scene}: [started ahead, +" in logs  # its lines, passed on by its step
