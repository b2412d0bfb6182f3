"""End to end: submit -> plan sensor -> execute_plan, on a real dagster-daemon with PostgreSQL storage."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from video_pipelines.doors import client
from video_pipelines.errors import PlanValidationError
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import SubmissionState

from ..conftest import serving
from ..media import dominant_frequency, local_path_of, make_tone, pcm_mono
from ..processes import DagsterDeployment, dagster_deployment, deployment_database

# One worker runs this module's tests, in order, on its one deployment (module-scoped).
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("e2e-submissions")]

SECRET_KEY = "e2e-test-passphrase"


def gen(node_id: str, prompt: str, duration: float = 1, resolution: int = 90) -> dict[str, Any]:
    params = {"prompt": prompt, "duration": duration, "resolution": resolution}
    return {"id": node_id, "type": "generateVideo", "params": params}


BASE: dict[str, Any] = {
    "jobs": [
        gen("job1", "Scene 1: a sunrise"),
        gen("job2", "Scene 2: the desk"),
        gen("job3", "Scene 3: a customer"),
        {"id": "job4", "type": "merge", "params": {"transition": "crossfade"}, "dependsOn": ["job1", "job2", "job3"]},
    ]
}


def french(audio_url: str) -> dict[str, Any]:
    plan = copy.deepcopy(BASE)
    plan["jobs"] += [
        {"id": "job5", "type": "lipSync", "params": {"audioUrl": audio_url}, "dependsOn": ["job4"]},
        {
            "id": "job6",
            "type": "addSubtitles",
            "params": {"text": "Bonjour !", "language": "fr"},
            "dependsOn": ["job5"],
        },
    ]
    return plan


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDeployment]:
    tmp = tmp_path_factory.mktemp("e2e_submissions")
    audio = tmp / "media"
    audio.mkdir()
    make_tone(audio / "french.mp3", 1000, 6)
    make_tone(audio / "spanish.mp3", 600, 6)
    env = {"VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1", "VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY}
    with (
        serving(audio) as server,
        deployment_database() as database_url,
        dagster_deployment(tmp, database_url, extra_env=env, webserver=False) as deployment,
    ):
        deployment.env["AUDIO_BASE"] = f"http://127.0.0.1:{server.port}"
        yield deployment


@pytest.fixture
def target(deployment: DagsterDeployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    """The client side, in this test process, pointed at the deployment's instance and database."""
    with deployment.client(monkeypatch) as target:
        yield target


def wait(
    target: client.Deployment, deployment: DagsterDeployment, execution_id: str, timeout: float = 180
) -> dict[str, Any]:
    try:
        return client.wait(execution_id, timeout=timeout, target=target)
    except Exception:
        print(deployment.log_tail())
        raise


def executed_nodes(target: client.Deployment, run_id: str) -> set[str]:
    return {
        stats.step_key.split("[", 1)[1].rstrip("]")
        for stats in target.instance.get_run_step_stats(run_id)
        if "[" in stats.step_key
    }


def test_base_then_variant_that_waits_and_reuses(deployment: DagsterDeployment, target: client.Deployment) -> None:
    base_id = client.submit(BASE, target=target)
    variant_id = client.submit(
        french(deployment.env["AUDIO_BASE"] + "/french.mp3"), SubmitOptions(base_execution_id=base_id), target=target
    )
    assert base_id.startswith("exec_") and variant_id > base_id
    assert client.status(variant_id, target=target)["status"] == "pending"

    base = wait(target, deployment, base_id)
    variant = wait(target, deployment, variant_id)
    assert base["status"] == "completed" and variant["status"] == "completed", variant

    # The variant's run was not created before its base ended.
    base_run = target.instance.get_run_record_by_id(base["runId"])
    variant_run = target.instance.get_run_record_by_id(variant["runId"])
    assert base_run is not None and variant_run is not None and base_run.end_time is not None
    assert variant_run.create_timestamp.timestamp() >= base_run.end_time
    assert variant_run.dagster_run.tags["video/base_execution_id"] == base_id

    assert executed_nodes(target, variant["runId"]) == {"job5", "job6"}  # reused nodes never run
    assert variant["reusedJobs"] == 4 and variant["completedJobs"] == 6 and variant["progress"] == 100
    for node_id in ("job1", "job2", "job3", "job4"):
        job = variant["jobs"][node_id]
        assert job["status"] == "reused" and job["reusedFrom"] == base_id
        assert job["result"]["sha256"] == base["jobs"][node_id]["result"]["sha256"]
    final = local_path_of(variant["result"]["url"])
    assert abs(probe(final).duration - 2.0) < 0.15  # 3 x 1 s - 2 x 0.5 s crossfades
    assert abs(dominant_frequency(pcm_mono(final)) - 1000) < 30

    # Changed params are recomputed; the rest is still reused.
    changed = french(deployment.env["AUDIO_BASE"] + "/french.mp3")
    changed["jobs"][1]["params"]["prompt"] = "Scene 2: the desk, at night"
    recomputed = wait(
        target, deployment, client.submit(changed, SubmitOptions(base_execution_id=base_id), target=target)
    )
    assert recomputed["status"] == "completed"
    assert {node: job["status"] for node, job in recomputed["jobs"].items()} == {
        "job1": "reused", "job2": "completed", "job3": "reused", "job4": "completed", "job5": "completed", "job6": "completed",
    }  # fmt: skip

    # The Spanish dependent plan: colliding ids, attached to the base's final video.
    spanish = {
        "jobs": [
            {"id": "job1", "type": "lipSync", "params": {"audioUrl": deployment.env["AUDIO_BASE"] + "/spanish.mp3"}},
            {
                "id": "job2",
                "type": "addSubtitles",
                "params": {"text": "¡Hola!", "language": "es"},
                "dependsOn": ["job1"],
            },
        ]
    }
    dependent = wait(
        target, deployment, client.submit(spanish, SubmitOptions(base_execution_id=base_id), target=target)
    )
    assert dependent["status"] == "completed" and dependent["reusedJobs"] == 0
    out = local_path_of(dependent["result"]["url"])
    assert abs(probe(out).duration - base["result"]["duration"]) < 0.1
    assert abs(dominant_frequency(pcm_mono(out)) - 600) < 30


def test_missing_and_failed_bases_are_refused_at_submit(
    deployment: DagsterDeployment, target: client.Deployment
) -> None:
    with pytest.raises(PlanValidationError, match=r"plan\.baseExecutionId: base execution exec_missing does not exist"):
        client.submit(BASE, SubmitOptions(base_execution_id="exec_missing"), target=target)

    broken = {
        "jobs": [
            gen("a", "x"),
            {
                "id": "b",
                "type": "lipSync",
                "params": {"audioUrl": deployment.env["AUDIO_BASE"] + "/nope.mp3"},
                "dependsOn": ["a"],
            },
        ]
    }
    failed_id = client.submit(broken, target=target)
    failed = wait(target, deployment, failed_id)
    assert failed["status"] == "failed" and "b (lipSync) failed" in failed["error"]
    assert failed["jobs"]["a"]["status"] == "completed" and failed["jobs"]["b"]["status"] == "failed"
    with pytest.raises(PlanValidationError, match=rf"plan\.baseExecutionId: base execution {failed_id} failed"):
        client.submit(BASE, SubmitOptions(base_execution_id=failed_id), target=target)


def test_idempotent_submit_and_bad_submissions_do_not_stop_the_daemon(
    deployment: DagsterDeployment, target: client.Deployment
) -> None:
    broken, _ = target.store.submit({"jobs": [{"id": "x", "type": "explode"}]})
    first = client.submit(BASE, SubmitOptions(idempotency_key="e2e-order-1"), target=target)
    assert client.submit(BASE, SubmitOptions(idempotency_key="e2e-order-1"), target=target) == first
    done = wait(target, deployment, first)
    assert done["status"] == "completed"
    assert len(target.instance.get_run_records(filters=_tag_filter(first))) == 1
    rejected = target.store.get(broken.execution_id)
    assert rejected is not None and rejected.state is SubmissionState.REJECTED
    assert "x.type: unknown operation 'explode'" in (rejected.error or "")


def _tag_filter(execution_id: str) -> Any:
    import dagster as dg

    return dg.RunsFilter(tags={"video/execution_id": execution_id})


def ffmpeg_processes(home: str) -> list[int]:
    """FFmpeg processes of the deployment whose DAGSTER_HOME is `home` (other tests may run FFmpeg at once)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline, environ = (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
            except OSError:
                continue
            if b"ffmpeg-linux" in cmdline and f"DAGSTER_HOME={home}".encode() in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def test_cancel_pending_and_running(deployment: DagsterDeployment, target: client.Deployment) -> None:
    long_plan = {"jobs": [gen("long", "a long render", duration=60, resolution=720)]}
    running_id = client.submit(long_plan, target=target)
    pending_id = client.submit(BASE, SubmitOptions(base_execution_id=running_id), target=target)  # waits for its base
    home = deployment.env["DAGSTER_HOME"]

    deadline = time.monotonic() + 60
    while client.status(running_id, target=target)["currentJob"] != "long":
        assert time.monotonic() < deadline, deployment.log_tail()
        time.sleep(0.5)
    while not ffmpeg_processes(home):
        assert time.monotonic() < deadline, "FFmpeg never started"
        time.sleep(0.2)

    assert client.cancel(pending_id, target=target)["status"] == "canceled"
    client.cancel(running_id, target=target)
    canceled = wait(target, deployment, running_id, timeout=60)
    assert canceled["status"] == "canceled" and canceled["jobs"]["long"]["status"] in {"failed", "skipped"}
    deadline = time.monotonic() + 15
    while ffmpeg_processes(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ffmpeg_processes(home) == [], "FFmpeg outlived its canceled step"
    assert client.status(pending_id, target=target)["status"] == "canceled"
    assert os.environ["DAGSTER_HOME"] == home
