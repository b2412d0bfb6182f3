"""`video-pipelines dev`: dagster dev and the HTTP API (and a worker with a broker), each in its own session
so this process decides how they stop; what outlives `STOP_TIMEOUT_SECONDS` is killed, freeing the ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg

from video_pipelines.api import ApiSettings
from video_pipelines.deployment.instance import prepare_dagster_home, write_workspace
from video_pipelines.deployment.workers import BROKER_URL_ENV, WorkerSettings
from video_pipelines.storage import ARTIFACTS_BASE_URL_ENV
from video_pipelines.submissions import SubmissionStore

# How long the children get to stop by themselves before what is left of them is killed.
STOP_TIMEOUT_SECONDS = 20
# How long a descendant that outlives its parent gets after its own SIGTERM.
LEFTOVER_GRACE_SECONDS = 5


def run_dev(*, host: str, port: int, api_port: int) -> int:
    """Run the webserver on `port` and the API on `api_port` (and a worker with a broker) until stopped."""
    home = prepare_dagster_home()
    workspace = write_workspace(home)
    api = ApiSettings.from_env(host=host, port=api_port)  # a bad API setting stops here, before anything runs
    # Result URLs a browser can open (the API serves the local artifacts); the children inherit it. A user's own wins.
    os.environ.setdefault(ARTIFACTS_BASE_URL_ENV, f"{api.url}/artifacts")
    # Create the instance's and the store's tables now: two processes creating a new SQLite storage at once collide.
    with dg.DagsterInstance.get(), SubmissionStore.from_env(home):
        pass
    print(f"DAGSTER_HOME={home}; webserver on http://{host}:{port}; API on {api.url}", file=sys.stderr, flush=True)
    commands = [
        ["dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)],
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
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, env=os.environ.copy(), start_new_session=True))
        while not received and all(process.poll() is None for process in processes):
            family.record(process.pid for process in processes)
            time.sleep(0.5)
    finally:
        # A signal passed on as it came; a child that ended by itself stops the others as Ctrl-C would.
        stop(processes, family, received[0] if received else signal.SIGINT)
    failed = [process.returncode for process in processes if process.returncode not in (0, -signal.SIGINT)]
    return 0 if received or not failed else failed[0]


def stop(processes: list[subprocess.Popen[bytes]], family: Family, signum: int) -> None:
    """Signal each child's process group, wait up to STOP_TIMEOUT_SECONDS, then kill what is left of the family."""
    family.record(process.pid for process in processes if process.poll() is None)
    for process in processes:
        if process.poll() is None:
            _signal(process.pid, signum, os.killpg)
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
