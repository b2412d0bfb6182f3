"""`video-pipelines demo` as a user runs it: quiet progress and a closing table, runs the UI can re-execute."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.api import execute_run
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget, WorkspaceFileTarget
from dagster._utils.hosted_user_process import recon_job_from_origin
from dagster_graphql.test.utils import execute_dagster_graphql

from video_pipelines.deployment.instance import write_workspace
from video_pipelines.doors.demo import CODE_LOCATION, DEV_ARTIFACTS_URL, code_location
from video_pipelines.executions import execution_status
from video_pipelines.orchestration.run_records import DagsterRunRecords

REPO = Path(__file__).resolve().parents[2]
_REEXECUTE = """
mutation ($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) { __typename ... on PythonError { message } }
}
"""
_ROW = re.compile(r"^([0-9a-f-]{36})\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+\$([\d.]+)\s+(\S+)$")


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The demo verb of this checkout, on `./.dagster_home` in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "video_pipelines.doors.cli", "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_prints_progress_and_a_table_and_its_runs_can_be_re_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = demo(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "DEBUG" not in output and " - dagster - " not in output
    assert "Warning" not in output, output
    lines = done.stdout.splitlines()
    progress = [line.split() for line in lines if line.endswith(" s")]
    assert ["product_demo", "job4", "completed"] in [line[:3] for line in progress]
    assert ["french_variant", "job1", "reused"] in [line[:3] for line in progress]
    assert ["spanish_dependent", "execution", "completed"] in [line[:3] for line in progress]
    header = ["execution", "plan", "status", "computed", "reused", "seconds", "cost", "video"]
    at = next(i for i, line in enumerate(lines) if line.split() == header)
    rows = [_ROW.match(line) for line in lines[at + 1 : at + 4]]
    assert all(rows), lines[at:]
    # The videos open now from their files; the UI and status link them where `video-pipelines dev` serves them.
    assert lines[at + 4 :] == [
        "",
        f"The UI and status link these videos at {DEV_ARTIFACTS_URL}/ (served by `video-pipelines dev`).",
    ]
    table = [row.groups() for row in rows if row]
    assert [(plan, status, computed, reused) for _, plan, status, computed, reused, *_ in table] == [
        ("product_demo", "completed", "4", "0"),
        ("french_variant", "completed", "2", "4"),
        ("spanish_dependent", "completed", "2", "0"),
    ]
    assert all(Path(row[-1]).is_file() for row in table)

    home = tmp_path / ".dagster_home"
    assert (home / "dagster.yaml").read_text().startswith("# Written by video-pipelines")
    assert "storage" not in (home / "dagster.yaml").read_text()  # the embedded default is SQLite
    assert list(home.glob("**/*.db")), "SQLite storage under .dagster_home"
    assert all(row[-1].startswith(str(home / "artifacts")) for row in table)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the artifact folder of the re-execution below
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = {row[0]: instance.get_run_by_id(row[0]) for row in table}
        for execution_id, *_, video in table:
            url = execution_status(DagsterRunRecords(instance), None, execution_id).to_wire()["result"]["url"]
            assert url == f"{DEV_ARTIFACTS_URL}/{Path(video).relative_to(home / 'artifacts')}"
        for run in runs.values():
            assert run is not None and run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == CODE_LOCATION
        # The runs list names each run's plan beside "Manually launched".
        assert [run.tags.get("video/plan") for run in runs.values() if run] == [row[1] for row in table]
        # Only the console was quieted: the event log keeps Dagster's DEBUG events and our INFO lines.
        logs = instance.all_logs(table[0][0])
        assert any(entry.level == logging.DEBUG for entry in logs)
        assert any("generating 3.0s" in entry.user_message for entry in logs)
        base = runs[table[0][0]]
        assert base is not None and base.remote_job_origin is not None
        # What the UI's "Re-execute all" does: find the parent's code location by name, create, run.
        with code_location(instance) as location:
            origin = location.origin
        target = InProcessWorkspaceLoadTarget(origin)  # type: ignore[arg-type]
        with WorkspaceProcessContext(instance, target) as workspace:
            context = workspace.create_request_context()
            location = context.get_code_location(base.remote_job_origin.location_name)
            repository = location.get_repository(base.remote_job_origin.repository_origin.repository_name)
            child = instance.create_reexecuted_run(
                request_context=context,
                parent_run=base,
                code_location=location,
                remote_job=repository.get_full_job(base.job_name),
                strategy=ReexecutionStrategy.ALL_STEPS,
            )
            result = execute_run(recon_job_from_origin(child.job_code_origin), child, instance)  # type: ignore[arg-type]
        assert result.success and child.parent_run_id == base.run_id
        # And the UI's own mutation, on dev's workspace: accepted (queued for the daemon), no CheckError.
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(write_workspace(home))])) as workspace:
            launched = execute_dagster_graphql(
                workspace.create_request_context(),
                _REEXECUTE,
                {"params": {"parentRunId": base.run_id, "strategy": "ALL_STEPS"}},
            )
        assert launched.data["launchPipelineReexecution"]["__typename"] == "LaunchRunSuccess", launched


def test_demo_verbose_brings_dagster_logs_back(tmp_path: Path) -> None:
    done = demo(tmp_path, "--verbose", "--plan", str(REPO / "video_pipelines" / "examples" / "product_demo.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert " - dagster - DEBUG - " in done.stderr and " - dagster - INFO - " in done.stderr
    (row,) = [line for line in done.stdout.splitlines() if _ROW.match(line)]
    assert row.split()[1:3] == ["product_demo", "completed"]
