"""The `video-pipelines` command line as a user runs it: a real process, stdout, stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from video_pipelines.api.models import StatusDocument
from video_pipelines.deployment.instance import describe_instance, render_instance_yaml
from video_pipelines.executions import ExecutionStatus
from video_pipelines.vocabulary import ExecutionState

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "video_pipelines" / "examples"


def local_env(**extra: str) -> dict[str, str]:
    """This environment without any deployment setting: the CLI's choice is then `./.dagster_home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    return {**env, **extra}


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["video-pipelines", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600
    )


def test_validate_prints_the_execution_order(tmp_path: Path) -> None:
    done = cli("validate", str(EXAMPLES / "french_variant.json"), cwd=tmp_path, env=local_env())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "plan is valid: 6 job(s) in 4 level(s), in execution order:"
    assert [line.split()[0] for line in lines[1:7]] == ["job1", "job2", "job3", "job4", "job5", "job6"]
    done = cli("validate", "--json", str(EXAMPLES / "product_demo.json"), cwd=tmp_path, env=local_env())
    report = json.loads(done.stdout)
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


def test_validate_reuses_what_earlier_executions_made(tmp_path: Path, dagster_home: Path) -> None:
    import dagster as dg

    from .harness import node_results, run_plan_in_process

    made = {
        "jobs": [
            {"id": "wide", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1, "resolution": 90}},
            {"id": "tall", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["wide"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        earlier = run_plan_in_process(made, instance)
    assert earlier.success
    plan = {
        "jobs": [
            {"id": "clip", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1, "resolution": 90}},
            {"id": "short", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["clip"]},
            {"id": "subs", "type": "addSubtitles", "params": {"text": "Hi", "language": "en"}, "dependsOn": ["short"]},
        ]
    }
    env = {**local_env(), "DAGSTER_HOME": str(dagster_home)}

    def actions(*extra: str, changed: dict[str, object] | None = None) -> list[tuple[str, str | None]]:
        stdin = json.dumps({**plan, **(changed or {})})
        done = cli("validate", "--json", *extra, "-", stdin=stdin, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return [(node["action"], node["reusedFrom"]) for node in json.loads(done.stdout)["nodes"]]

    assert actions() == [("reuse", earlier.run_id), ("reuse", earlier.run_id), ("run", None)]
    text = cli("validate", "-", stdin=json.dumps(plan), cwd=tmp_path, env=env).stdout
    assert f"same operation, params and inputs as tall of {earlier.run_id}: reused, not run" in text, text
    # Another tenant's results are not its own; `"cache": false` computes anew.
    assert actions("--tenant", "acme") == [("run", None)] * 3
    assert actions(changed={"cache": False}) == [("run", None)] * 3
    # A video the artifact storage has lost is made again, as the run would decide.
    tall = node_results(earlier)["tall"]
    Path(tall.url.removeprefix("file://")).unlink()
    assert actions() == [("reuse", earlier.run_id), ("run", None), ("run", None)]
    # Where there is no deployment, nothing is looked up and nothing is made.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli("validate", "-", stdin=json.dumps(plan), cwd=elsewhere, env=local_env())
    assert done.returncode == 0 and not (elsewhere / ".dagster_home").exists()


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


def test_validate_a_dependent_plan_against_a_base(tmp_path: Path) -> None:
    done = cli("validate", str(EXAMPLES / "spanish_dependent.json"))
    assert done.returncode == 2 and "job1.dependsOn: lipSync takes exactly 1 input video, got 0" in done.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = {**local_env(), "DAGSTER_HOME": str(home)}
    done = cli("validate", "--base-execution-id", "exec_base", str(EXAMPLES / "spanish_dependent.json"), env=env)
    # As `submit` and the API answer: a base that does not exist is refused at once.
    assert done.returncode == 2, done.stderr
    assert "plan.baseExecutionId: base execution exec_base does not exist" in done.stderr


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


def test_repository_dagster_yaml_is_the_rendered_production_config() -> None:
    assert (REPO / "dagster.yaml").read_text() == render_instance_yaml(postgres=True, celery=True)


def test_daemon_loops_faster_only_where_dagster_allows_no_less() -> None:
    # In a process of its own: the change is to Dagster's classes, for the daemon's whole process.
    check = """
import dagster._daemon.sensor as sensor_daemon
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from video_pipelines.orchestration.workers.daemon import speed_up_loops
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
    assert lines[0] == "[1, 5] [0.2, 5.0] 0.25", done.stdout + done.stderr
    assert 4 <= int(lines[1]) <= 6, done.stdout


def test_daemon_passes_dagster_daemon_options_on() -> None:
    done = subprocess.run(["video-pipelines", "daemon", "--bogus-option"], capture_output=True, text=True)
    assert done.returncode == 2 and "No such option '--bogus-option'" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status", "exec_x"],
        ["cancel", "exec_x"],
        ["retry", "exec_x"],
        ["deliveries", "exec_x"],
        ["deliveries", "redeliver", "msg_exec_x_completed"],
        ["validate", "--base-execution-id", "exec_x", str(EXAMPLES / "spanish_dependent.json")],
    ],
)
def test_commands_on_an_existing_execution_never_make_an_instance(tmp_path: Path, args: list[str]) -> None:
    done = cli(*args, cwd=tmp_path, env=local_env())
    home = tmp_path / ".dagster_home"
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: no Dagster instance at {home}: set DAGSTER_HOME to the deployment's instance folder "
        "(or VIDEO_PIPELINES_API_URL and VIDEO_PIPELINES_API_KEY to use its HTTP API)\n"
    )
    assert not home.exists()


def test_submit_and_status_say_which_instance(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = local_env(DAGSTER_HOME=str(home), VIDEO_PIPELINES_UI_URL="http://127.0.0.1:3000/")
    no_daemon = (
        f"warning: no daemon is running for the instance at {home}: the submission stays pending until one runs "
        "(`video-pipelines dev` or `video-pipelines daemon`)"
    )
    done = cli("submit", str(EXAMPLES / "product_demo.json"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"warning: no Dagster instance at {home}; created a new one. Set DAGSTER_HOME to use an existing deployment.",
        no_daemon,
    ]
    execution_id = json.loads(done.stdout)["executionId"]  # stdout is the answer alone
    assert (home / "dagster.yaml").is_file() and not (tmp_path / ".dagster_home").exists()

    again = cli("submit", str(EXAMPLES / "product_demo.json"), cwd=tmp_path, env=env)
    assert again.returncode == 0 and again.stderr.splitlines() == [no_daemon]

    done = cli("status", execution_id, cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stderr == ""
    status = json.loads(done.stdout)
    assert status["status"] == "pending" and "uiUrl" not in status  # no run yet: nothing to link to

    done = cli("status", "exec_missing", cwd=tmp_path, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: no execution exec_missing in the instance at {home}\n"


def test_status_links_the_run_in_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    status = ExecutionStatus("exec_1", ExecutionState.PROCESSING, run_id="abc-123")
    assert "uiUrl" not in status.to_wire()  # no UI URL known
    monkeypatch.setenv("VIDEO_PIPELINES_UI_URL", "https://dagster.example.com/")
    assert status.to_wire()["uiUrl"] == "https://dagster.example.com/runs/abc-123"
    assert (
        StatusDocument.of(status).model_dump(by_alias=True)["uiUrl"] == "https://dagster.example.com/runs/abc-123"
    )  # the API's
    assert "uiUrl" not in replace(status, run_id=None).to_wire()  # no run yet: nothing to link to


def test_instance_messages_never_show_the_database_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", "postgresql://video:s3cret@db.example:5432/vp?sslmode=require")
    where = describe_instance(tmp_path)
    assert where == f"the instance at {tmp_path} (database postgresql://db.example:5432/vp)"
    assert "s3cret" not in where


def test_an_invalid_submit_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text('{"jobs": [{"id": "a", "operation": "nope"}]}')
    done = cli("submit", "plan.json", cwd=tmp_path, env=local_env())
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("invalid plan:\n  a.type: unknown operation 'nope'")
    assert [path.name for path in tmp_path.iterdir()] == ["plan.json"]  # no .dagster_home


def test_every_json_answer_is_one_document_and_a_final_newline(tmp_path: Path) -> None:
    env = local_env(DAGSTER_HOME=str(tmp_path / "home"))
    plan = str(EXAMPLES / "product_demo.json")
    for args in (
        ["api-keys", "create", "--name", "ci"],
        ["api-keys", "list"],
        ["validate", "--json", plan],
        ["submit", plan],
    ):
        done = cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("\n") and not done.stdout.endswith("\n\n"), args
        json.loads(done.stdout)
    execution_id = json.loads(done.stdout)["executionId"]
    for args in (["status", execution_id], ["cancel", execution_id], ["deliveries", execution_id]):
        done = cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith(("}\n", "]\n")), args
