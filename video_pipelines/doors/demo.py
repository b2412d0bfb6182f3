"""`video-pipelines demo`: the main job on embedded defaults, end to end, with a readable report.

It runs the product demo as a base, then the French variant (reuses the base's scenes and
merge, adds lip-sync and subtitles) and the Spanish dependent plan (attaches to the base's
final video), serving its own sample voice tracks on 127.0.0.1.

Each run is created the way the UI and `dagster job launch` create one, from the
`video_pipelines` code location (the name `dev`'s workspace gives it), and executed in this
process: the run records its remote job origin, so the UI can re-execute it like any other.
While a run executes, a line is printed per node state change (polled from the status
document); Dagster's own console log is shown only at WARNING and above unless `verbose`,
and the run's event log in the instance stays complete. A table of the executions closes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
import dagster._check as check
import sqlalchemy.exc
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id
from dagster._utils.hosted_user_process import recon_job_from_origin

from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.examples import example_plan
from video_pipelines.executions import BASE_EXECUTION_ID_TAG, EXECUTION_ID_TAG, ExecutionStatus, execution_status
from video_pipelines.executions.records import PLAN_NAME_TAG
from video_pipelines.operations import run_ffmpeg
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import Plan, load_plan_json, parse_plan
from video_pipelines.storage import ARTIFACTS_BASE_URL_ENV, ArtifactStore, store_from_env
from video_pipelines.vocabulary import ExecutionState

CODE_LOCATION = "video_pipelines"
"""The code location's name in `video_pipelines.deployment.instance.write_workspace`: the UI finds a run's job by it."""
DEFINITIONS_MODULE = "video_pipelines.orchestration.definitions"
JOB_NAME = "execute_plan"
_POLL_SECONDS = 0.5
# Where `video-pipelines dev` (its API on the default port) serves the artifact folder. The demo's result URLs
# point there, so its videos open from the Dagster UI and `status` once dev runs; the demo itself ends, so its
# table names the files to open now.
DEV_ARTIFACTS_URL = "http://127.0.0.1:8080/artifacts"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve_voice_tracks() -> Iterator[str]:
    """Sample French and Spanish voice tracks (tones) over HTTP on 127.0.0.1; yields the base URL."""
    with tempfile.TemporaryDirectory(prefix="vp-demo-audio-") as folder:
        for name, frequency in (("french.mp3", 880), ("spanish.mp3", 660)):
            run_ffmpeg(
                ["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration=10", "-c:a", "libmp3lame",
                 str(Path(folder) / name)],
                description=f"render sample {name}",
            )  # fmt: skip
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=folder))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        previous = os.environ.get("VIDEO_PIPELINES_ALLOWED_HOSTS")
        os.environ["VIDEO_PIPELINES_ALLOWED_HOSTS"] = ",".join(filter(None, [previous, "127.0.0.1"]))
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            if previous is None:
                os.environ.pop("VIDEO_PIPELINES_ALLOWED_HOSTS", None)
            else:
                os.environ["VIDEO_PIPELINES_ALLOWED_HOSTS"] = previous


def _with_local_audio(plan: dict[str, Any], audio_base: str) -> dict[str, Any]:
    for job in plan["jobs"]:
        url = job.get("params", {}).get("audioUrl")
        if url:
            job["params"]["audioUrl"] = f"{audio_base}/{url.rsplit('/', 1)[-1]}"
    return plan


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[CodeLocation]:
    """The installed `video_pipelines` definitions as the code location the UI knows, loaded in this process."""
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=CODE_LOCATION,
    )
    with origin.create_location(instance) as location:
        yield location


def create_plan_run(
    plan: Plan, instance: dg.DagsterInstance, location: CodeLocation, *, name: str | None = None, verbose: bool = False
) -> dg.DagsterRun:
    """A new `execute_plan` run of `plan` in `instance`, with the remote job origin the UI re-executes from.

    Without `verbose` the run config sets Dagster's console logger to WARNING: that logger only
    prints, so the event log keeps every message.
    """
    loggers = None if verbose else {"console": {"config": {"log_level": "WARNING"}}}
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(plan)}, loggers=loggers).to_config_dict()  # type: ignore[no-untyped-call]
    run_id = make_new_run_id()
    # Tagged before it starts, as the submission sensor does, so the status document finds it at once.
    tags = {EXECUTION_ID_TAG: run_id, **({PLAN_NAME_TAG: name} if name else {})}
    if plan.base_execution_id:
        tags[BASE_EXECUTION_ID_TAG] = plan.base_execution_id
    (repository,) = location.get_repositories().values()
    remote_job = repository.get_full_job(JOB_NAME)
    execution_plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=JOB_NAME,
        run_id=run_id,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=execution_plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=execution_plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )


class _Progress:
    """Prints a line whenever the execution or one of its nodes changes state, with seconds since the start."""

    def __init__(self, name: str, instance: dg.DagsterInstance, run_id: str, out: TextIO) -> None:
        self._name, self._instance, self._run_id, self._out = name, instance, run_id, out
        self._seen: dict[str, str] = {}
        self._started = time.monotonic()

    def poll(self) -> ExecutionStatus:
        status = execution_status(DagsterRunRecords(self._instance), None, self._run_id)
        states = {node: job.state.value for node, job in status.nodes.items()}
        states[""] = status.state.value
        for node, state in states.items():
            # Every node starts pending: only what changes after that is news.
            if self._seen.get(node, "pending") != state:
                self._seen[node] = state
                seconds = time.monotonic() - self._started
                line = f"{self._name:<18} {node or 'execution':<10} {state:<10} {seconds:6.1f} s"
                print(line, file=self._out, flush=True)
        return status

    def watch(self, done: threading.Event) -> None:
        while not done.wait(_POLL_SECONDS):
            # A locked SQLite read only delays a progress line: the poll after the run prints the end state.
            with suppress(sqlalchemy.exc.OperationalError):
                self.poll()


@dataclass(frozen=True)
class Row:
    """One execution in the closing table."""

    plan: str
    status: ExecutionStatus
    seconds: float

    def cells(self, store: ArtifactStore) -> list[str]:
        status = self.status
        video = (status.result.url if status.result else "") or status.error or ""
        computed, reused = status.completed_jobs - status.reused_jobs, status.reused_jobs
        return [status.execution_id, self.plan, status.state.value, str(computed), str(reused),
                f"{self.seconds:.1f}", f"${status.cost_usd:.2f}", openable(video, store)]  # fmt: skip


def run_plan_with_progress(
    name: str,
    plan_wire: Mapping[str, Any],
    instance: dg.DagsterInstance,
    location: CodeLocation,
    *,
    verbose: bool = False,
    out: TextIO = sys.stdout,
) -> Row:
    """Run `plan_wire` in this process as a run of the code location, printing its progress; its row of the table."""
    run = create_plan_run(parse_plan(plan_wire), instance, location, name=name, verbose=verbose)
    progress = _Progress(name, instance, run.run_id, out)
    done = threading.Event()
    watcher = threading.Thread(target=progress.watch, args=(done,), daemon=True)
    started = time.monotonic()
    watcher.start()
    try:
        execute_run(recon_job_from_origin(check.not_none(run.job_code_origin)), run, instance)
    finally:
        done.set()
        watcher.join()
    return Row(name, progress.poll(), time.monotonic() - started)


def format_table(rows: list[Row], store: ArtifactStore) -> str:
    """The closing table: one execution a line, its video as a person opens it (`openable`), else its error."""
    header = ["execution", "plan", "status", "computed", "reused", "seconds", "cost", "video"]
    cells = [row.cells(store) for row in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]])
        for line in [header, *cells]
    )


def openable(url: str, store: ArtifactStore) -> str:
    """What a person opens from the terminal: the local file behind a served artifact URL, else the URL itself."""
    base = os.environ.get(ARTIFACTS_BASE_URL_ENV, "").rstrip("/")
    if base and url.startswith(base + "/"):
        local = store.local_path(url.removeprefix(base + "/"))
        if local is not None and local.exists():
            return str(local)
    return url


def run_demo(plan_file: str | None = None, *, verbose: bool = False) -> int:
    home = prepare_dagster_home()
    print(f"DAGSTER_HOME={home}", file=sys.stderr)
    os.environ.setdefault(ARTIFACTS_BASE_URL_ENV, DEV_ARTIFACTS_URL)  # a user's own wins, as under dev
    store = store_from_env(home)
    rows = []
    with dg.DagsterInstance.get() as instance, code_location(instance) as location:
        if plan_file:
            plan = load_plan_json(Path(plan_file).read_text())
            rows.append(run_plan_with_progress(Path(plan_file).stem, plan, instance, location, verbose=verbose))
        else:
            with serve_voice_tracks() as audio_base:
                base = run_plan_with_progress(
                    "product_demo", example_plan("product_demo"), instance, location, verbose=verbose
                )
                rows.append(base)
                if base.status.state is ExecutionState.COMPLETED:
                    for name in ("french_variant", "spanish_dependent"):
                        plan = _with_local_audio(example_plan(name), audio_base)
                        plan["baseExecutionId"] = base.status.execution_id
                        rows.append(run_plan_with_progress(name, plan, instance, location, verbose=verbose))
    print(f"\n{format_table(rows, store)}")
    if os.environ[ARTIFACTS_BASE_URL_ENV] == DEV_ARTIFACTS_URL:
        print(f"\nThe UI and status link these videos at {DEV_ARTIFACTS_URL}/ (served by `video-pipelines dev`).")
    return 0 if all(row.status.state is ExecutionState.COMPLETED for row in rows) else 1
