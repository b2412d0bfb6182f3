"""`video-pipelines dev`: dagster dev and the HTTP API (and a worker with a broker), each in its own session
so this process decides how they stop; what outlives `STOP_TIMEOUT_SECONDS` is killed, freeing the ports.

The terminal holds what a person acts on: the banner with the two URLs, one line per execution state change
(with its run's page; a failure's error in full), and the children's warnings and errors. Their DEBUG and INFO
records (sensor ticks, run events, access logs) are left out by logger and level; the event log keeps them.
The children are started with this interpreter (`python -m`), so a virtualenv need not be on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TextIO

import dagster as dg
import sqlalchemy.exc

from video_pipelines.api import ApiSettings
from video_pipelines.deployment.instance import prepare_dagster_home, write_workspace
from video_pipelines.deployment.workers import BROKER_URL_ENV, WorkerSettings
from video_pipelines.errors import VideoPipelineError
from video_pipelines.executions import ExecutionStatus
from video_pipelines.executions.status import UI_URL_ENV, run_status, submission_status
from video_pipelines.orchestration.run_records import JOB_NAME, DagsterRunRecords, run_view
from video_pipelines.storage import ARTIFACTS_BASE_URL_ENV
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import ExecutionState

# How long the children get to stop by themselves before what is left of them is killed.
STOP_TIMEOUT_SECONDS = 20
# How long a descendant that outlives its parent gets after its own SIGTERM.
LEFTOVER_GRACE_SECONDS = 5
# The start of the warning `dagster dev` gives about itself.
SUPERSEDED = "Function `dev_command` is superseded"
# How often the runs and the newest submissions are read for execution state changes, and how many submissions.
WATCH_SECONDS = 1.0
WATCHED = 20


def run_dev(*, host: str, port: int, api_port: int) -> int:
    """Run the webserver on `port` and the API on `api_port` (and a worker with a broker) until stopped."""
    home = prepare_dagster_home()
    workspace = write_workspace(home)
    api = ApiSettings.from_env(host=host, port=api_port)  # a bad API setting stops here, before anything runs
    ui = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    # Result URLs a browser can open (the API serves the local artifacts) and the UI that status documents link;
    # the children inherit them. A user's own wins.
    os.environ.setdefault(ARTIFACTS_BASE_URL_ENV, f"{api.url}/artifacts")
    os.environ.setdefault(UI_URL_ENV, ui)
    # Create the instance's and the store's tables now: two processes creating a new SQLite storage at once collide.
    with dg.DagsterInstance.get(), SubmissionStore.from_env(home):
        pass
    print(f"DAGSTER_HOME={home}; webserver on {ui}; API on {api.url}", file=sys.stderr, flush=True)
    # dagster dev runs in DAGSTER_HOME: in another folder it warns about a dagster.yaml there (this repository's
    # production one) that it does not read anyway. Its SupersessionWarning points to `dg dev`, which needs the
    # dagster-dg-cli package and a dg project layout this package does not have: that one warning is ignored.
    dagster_dev = [sys.executable, "-W", f"ignore:{SUPERSEDED}", "-m", "dagster", "dev"]
    commands = [
        [*dagster_dev, "-w", str(workspace), "-h", host, "-p", str(port)],
        [sys.executable, "-m", "video_pipelines.doors.cli", "serve", "--host", host, "--port", str(api_port)],
    ]
    if os.environ.get(BROKER_URL_ENV):
        WorkerSettings.from_env()  # an unusable broker or backend stops here, before anything runs
        commands.append([sys.executable, "-m", "video_pipelines.doors.cli", "worker", "--concurrency", "2"])
    # Started in the background of a script, this process ignores SIGINT, and its children would inherit
    # that (dagster dev then ignores SIGTERM too): a handler of our own is reset to the default in them.
    received: list[int] = []

    def stop_on(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, stop_on)
    signal.signal(signal.SIGTERM, stop_on)
    processes: list[subprocess.Popen[bytes]] = []
    family = Family()
    # Unbuffered, so a child's line reaches the terminal when written, not when its buffer fills.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for command in commands:
            processes.append(start(command, env, cwd=home if command[: len(dagster_dev)] == dagster_dev else None))
        with dg.DagsterInstance.get() as instance, SubmissionStore.from_env(home) as store:
            lines = ExecutionLines(DagsterRunRecords(instance), store, sys.stderr)
            while not received and all(process.poll() is None for process in processes):
                family.record(process.pid for process in processes)
                # A locked SQLite read only delays a line: the next poll reads the change.
                with contextlib.suppress(sqlalchemy.exc.OperationalError):
                    lines.poll()
                time.sleep(WATCH_SECONDS)
    finally:
        # A signal passed on as it came; a child that ended by itself stops the others as Ctrl-C would.
        stop(processes, family, received[0] if received else signal.SIGINT)
    failed = [process.returncode for process in processes if process.returncode not in (0, -signal.SIGINT)]
    return 0 if received or not failed else failed[0]


def start(command: list[str], env: dict[str, str], *, cwd: Path | None) -> subprocess.Popen[bytes]:
    """`command` in its own session, its output relayed to ours without its chatter (see `relay`)."""
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    assert process.stdout is not None  # piped just above
    threading.Thread(target=relay, args=(process.stdout, sys.stderr), daemon=True).start()
    return process


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A record's first line in Dagster's console format ("<time> - dagster.daemon - INFO - ...") or in Python's and
# uvicorn's ("INFO:dagster.daemon:...", "INFO:     ...").
_RECORD = re.compile(
    r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - (?P<logger>dagster[\w.-]*) - (?P<level>[A-Z]+) - )"
    r"|(?P<plain>DEBUG|INFO|WARNING|ERROR|CRITICAL):"
)
CHATTER = frozenset({"DEBUG", "INFO"})


def relay(source: IO[bytes], out: TextIO) -> None:
    """Copy `source` line by line, leaving out Dagster's and uvicorn's DEBUG and INFO records with their
    continuation lines; warnings, errors (their tracebacks whole) and anything else pass."""
    quiet = False
    for raw in source:
        line = raw.decode(errors="replace")
        if record := _RECORD.match(_ANSI.sub("", line)):
            quiet = (record["level"] or record["plain"]) in CHATTER
        if not quiet:
            out.write(line)
            out.flush()


class ExecutionLines:
    """Prints a line whenever an execution's state changes: its id, state and run page (once it has a run); a
    failure's error whole, on the next line."""

    def __init__(self, records: DagsterRunRecords, store: SubmissionStore, out: TextIO) -> None:
        self.records, self.store, self.out = records, store, out
        self.since = datetime.now(UTC)
        # What was there before dev started is not news.
        self.seen: dict[str, ExecutionState] = {status.execution_id: status.state for status in self.unlaunched()}
        self.launched: set[str] = set()

    def unlaunched(self) -> list[ExecutionStatus]:
        """The newest submissions without a run: pending (a variant waits for its base), rejected or canceled."""
        return [submission_status(each) for each in self.store.newest(None, limit=WATCHED) if each.run_id is None]

    def poll(self) -> None:
        for status in self.unlaunched():
            if status.execution_id not in self.launched:  # the store marks a launch a tick after the run exists
                self.show(status)
        instance = self.records.instance
        updated = instance.get_run_records(
            filters=dg.RunsFilter(job_name=JOB_NAME, updated_after=self.since),
            order_by="update_timestamp",
            ascending=True,
        )
        for record in updated:
            self.since = max(self.since, record.update_timestamp)
            # From the run itself: a run launched from the Launchpad has no execution tag until its first step.
            try:
                status = run_status(self.records, run_view(record.dagster_run, record))
                self.launched.add(status.execution_id)
                self.show(status)
            except VideoPipelineError as exc:  # a run this package cannot read: said, and dev goes on
                print(f"{_now()} run {record.dagster_run.run_id}: {exc}", file=self.out, flush=True)

    def show(self, status: ExecutionStatus) -> None:
        if self.seen.get(status.execution_id) is status.state:
            return
        self.seen[status.execution_id] = status.state
        line = f"{_now()} {status.execution_id} {status.state.value} {status.ui_url or ''}".rstrip()
        if status.error:
            line += f"\n  error: {status.error}"
        print(line, file=self.out, flush=True)


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def stop(processes: list[subprocess.Popen[bytes]], family: Family, signum: int) -> None:
    """Signal each child, wait up to STOP_TIMEOUT_SECONDS, then kill what is left of the family.

    The child alone, not its group: dagster dev stops its webserver and daemon before its code server, while a
    signal to the whole group ended the code server under a sensor's tick (an error per sensor at every stop).
    """
    family.record(process.pid for process in processes if process.poll() is None)
    for process in processes:
        if process.poll() is None:
            _signal(process.pid, signum)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0))
    # The children are gone or late: a descendant that outlives them (in another group) gets a short grace.
    for pid in family.alive():
        _signal(pid, signal.SIGTERM)
    grace_ends = time.monotonic() + min(max(deadline - time.monotonic(), 0), LEFTOVER_GRACE_SECONDS)
    while family.alive() and time.monotonic() < grace_ends:
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            _signal(process.pid, signal.SIGKILL, os.killpg)
    for pid in family.alive():
        _signal(pid, signal.SIGKILL)
    for process in processes:
        process.wait()


class Family:
    """Every process descended from the children, as (pid, start time): a pid reused later is not ours."""

    def __init__(self) -> None:
        self.members: dict[int, str] = {}

    def record(self, roots: Iterable[int]) -> None:
        """Add the processes under `roots` (and the roots) as they are now; nothing without /proc."""
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _started) in table.items():
            children.setdefault(parent, []).append(pid)
        pending = list(roots)
        while pending:
            pid = pending.pop()
            if pid in table and pid not in self.members:
                self.members[pid] = table[pid][1]
                pending.extend(children.get(pid, []))

    def alive(self) -> list[int]:
        table = _process_table()
        return [pid for pid, started in self.members.items() if pid in table and table[pid][1] == started]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every running process (zombies left out), from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue  # ended while we looked
        # The command name, in parentheses, may hold spaces: the fields after its last ")" are fixed.
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.parent.name)] = (int(fields[1]), fields[19])
    return table


def _signal(pid: int, signum: int, kill: Callable[[int, int], None] = os.kill) -> None:
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signum)
