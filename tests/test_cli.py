"""The `video-pipelines` command line as a user runs it: a real process, stdout, stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from video_pipelines.instance import render_instance_yaml

from .media import local_path_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "video_pipelines" / "examples"


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["video-pipelines", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600
    )


def test_validate_prints_the_execution_order() -> None:
    done = cli("validate", str(EXAMPLES / "french_variant.json"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "plan is valid: 6 job(s) in 4 level(s), in execution order:"
    assert [line.split()[0] for line in lines[1:7]] == ["job1", "job2", "job3", "job4", "job5", "job6"]
    report = json.loads(cli("validate", "--json", str(EXAMPLES / "product_demo.json")).stdout)
    assert [node["id"] for node in report["nodes"]] == ["job1", "job2", "job3", "job4"]
    assert report["nodes"][3] == {
        "id": "job4",
        "operation": "merge",
        "level": 1,
        "dependsOn": ["job1", "job2", "job3"],
        "action": "run",
        "reason": None,
        "reusedFrom": None,
        "estimatedCost": 0.0,
    }
    assert report["estimatedCost"] == 0.0 and report["costUnknown"] is False


def test_validate_estimates_remote_costs() -> None:
    plan = {
        "jobs": [
            {"id": "g", "type": "generateVideo", "params": {"prompt": "x", "duration": 8, "provider": "google-cloud"}}
        ]
    }
    report = json.loads(cli("validate", "--json", "-", stdin=json.dumps(plan)).stdout)
    assert report["estimatedCost"] == 4.0  # veo-2.0 at the default $0.50/s
    plan["jobs"].append(
        {
            "id": "l",
            "type": "lipSync",
            "params": {"audioUrl": "https://x/a.mp3", "provider": "replicate"},
            "dependsOn": ["g"],
        }
    )
    report = json.loads(cli("validate", "--json", "-", stdin=json.dumps(plan)).stdout)
    assert report["nodes"][1]["estimatedCost"] == 0.112  # 8 s of kling-lip-sync at the default $0.014/s
    assert report["costUnknown"] is False


def test_validate_a_dependent_plan_against_a_base() -> None:
    done = cli("validate", str(EXAMPLES / "spanish_dependent.json"))
    assert done.returncode == 2 and "job1.dependsOn: lipSync takes exactly 1 input video, got 0" in done.stderr
    assert cli("validate", "--base-execution-id", "exec_base", str(EXAMPLES / "spanish_dependent.json")).returncode == 0


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ('{"jobs": [', "plan is not valid JSON"),
        ('{"jobs": []}', "the plan is empty"),
        ('{"jobs": [{"id": "a", "type": "explode"}]}', "a.type: unknown operation 'explode'"),
    ],
)
def test_validate_rejects_with_exit_2_and_no_traceback(plan: str, expected: str) -> None:
    done = cli("validate", "-", stdin=plan)
    assert done.returncode == 2
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_validate_missing_file() -> None:
    done = cli("validate", "/nonexistent/plan.json")
    assert done.returncode == 2 and "cannot read plan /nonexistent/plan.json" in done.stderr


def test_demo_runs_the_product_demo_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    done = cli("demo", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    base, french, spanish = json.loads(done.stdout)
    assert [r["status"] for r in (base, french, spanish)] == ["completed"] * 3
    assert base["computed"] == ["job1", "job2", "job3", "job4"] and base["reused"] == []
    assert french["reused"] == ["job1", "job2", "job3", "job4"] and french["computed"] == ["job5", "job6"]
    assert spanish["reused"] == [] and spanish["computed"] == ["job1", "job2"]
    final = base["video"]
    assert abs(final["duration"] - 8.0) <= 0.3 and final["aspectRatio"] == "16:9"
    assert abs(french["video"]["duration"] - 8.0) <= 0.3 and abs(spanish["video"]["duration"] - 8.0) <= 0.3
    assert local_path_of(final["url"]).is_file() and local_path_of(spanish["video"]["url"]).is_file()
    home = tmp_path / ".dagster_home"
    assert (home / "dagster.yaml").read_text().startswith("# Written by video-pipelines")
    assert "storage" not in (home / "dagster.yaml").read_text()  # the embedded default is SQLite
    assert list(home.glob("**/*.db")), "SQLite storage under .dagster_home"
    assert str(home / "artifacts") in final["url"]


def test_repository_dagster_yaml_is_the_rendered_production_config() -> None:
    assert (REPO / "dagster.yaml").read_text() == render_instance_yaml(postgres=True, celery=True)


def test_daemon_loops_faster_only_where_dagster_allows_no_less() -> None:
    # In a process of its own: the change is to Dagster's classes, for the daemon's whole process.
    check = """
import dagster._daemon.sensor as sensor_daemon
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from video_pipelines.orchestration.daemon import speed_up_loops
before = [QueuedRunCoordinator(dequeue_interval_seconds=n).dequeue_interval_seconds for n in (1, 5)]
speed_up_loops()
after = [QueuedRunCoordinator(dequeue_interval_seconds=n).dequeue_interval_seconds for n in (1, 5)]
print(before, after, sensor_daemon.MIN_INTERVAL_LOOP_TIME)
# The queue daemon's loop passes every 0.2 s (Dagster's own waits in 0.5 s slices): count its passes in 1 s.
import time
from threading import Event
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
daemon = QueuedRunCoordinatorDaemon(interval_seconds=0.2)
passes = []
daemon.run_iteration = lambda context: iter(passes.append(time.time()) or ())
loop = daemon.core_loop(None, Event())
end = time.time() + 1.0
while time.time() < end:
    next(loop)
print(len(passes))
"""
    done = subprocess.run(["python", "-c", check], capture_output=True, text=True, check=True)
    lines = done.stdout.split("\n")
    assert lines[0] == "[1, 5] [0.2, 5.0] 1", done.stdout + done.stderr
    assert 4 <= int(lines[1]) <= 6, done.stdout


def test_daemon_passes_dagster_daemon_options_on() -> None:
    done = subprocess.run(["video-pipelines", "daemon", "--bogus-option"], capture_output=True, text=True)
    assert done.returncode == 2 and "No such option '--bogus-option'" in done.stderr, done.stderr
