"""The machine's live processes as /proc shows them (Linux): waiting for some of them to end, stopping a group.

The tests use it to make sure that what they started has ended: every process of a process group
(`stop_process_group`), every process a test session started (`conftest.no_process_left_behind`).
Zombies are not counted: they have ended, only their exit status is still waiting for a parent to read it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessEntry:
    pid: int
    ppid: int
    pgid: int
    command: str

    def environ(self, name: str) -> str | None:
        """`name` in the environment the process was started with; None if unset or the process is gone."""
        try:
            raw = (PROC / str(self.pid) / "environ").read_bytes()
        except OSError:
            return None
        prefix = f"{name}=".encode()
        for entry in raw.split(b"\0"):
            if entry.startswith(prefix):
                return entry[len(prefix) :].decode(errors="replace")
        return None

    def describe(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}, group {self.pgid}): {self.command[:300]}"


def _entry(pid: str) -> ProcessEntry | None:
    try:
        stat = (PROC / pid / "stat").read_text()
        command = (PROC / pid / "cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, the last ")" ends it.
    state, ppid, pgid = stat.rsplit(")", 1)[1].split()[:3]
    if state in ("Z", "X"):
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return ProcessEntry(int(pid), int(ppid), int(pgid), command.replace(b"\0", b" ").decode(errors="replace") or name)


def live_processes() -> list[ProcessEntry]:
    """Every process of the machine that has not ended."""
    entries = (_entry(path.name) for path in PROC.iterdir() if path.name.isdigit())
    return [entry for entry in entries if entry is not None]


def process_group(pgid: int) -> list[ProcessEntry]:
    """The live processes of process group `pgid`."""
    return [entry for entry in live_processes() if entry.pgid == pgid]


def wait_until_none(find: Callable[[], list[ProcessEntry]], timeout: float) -> list[ProcessEntry]:
    """Ask `find` until it finds nothing or `timeout` seconds have passed; what it found last."""
    deadline = time.monotonic() + timeout
    while (found := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Stop a process started with `start_new_session=True` and every process of its group: SIGTERM, then
    SIGKILL after `timeout` s (a code server waits on SIGTERM for its runs' end or its heartbeat's timeout,
    20-45 s, which no test needs). Returns once none of them is left.

    Not just the leader: a Dagster code server (a child of the daemon or the webserver) outlives it until the
    runs it launched have ended, and the database a test drops next must outlive them all. A code server whose
    run ended after the drop stays forever: its cleanup thread dies looking the run up in the missing database.
    """
    stop_process_groups([process], timeout)


def stop_process_groups(processes: list[subprocess.Popen[bytes]], timeout: float = 5) -> None:
    """`stop_process_group` for several groups at once: one SIGTERM to each, one `timeout` for them all (a
    deployment's teardown waits once, not once per process)."""
    groups = {process.pid: process for process in processes}

    def left() -> list[ProcessEntry]:
        for process in processes:
            process.poll()  # a leader is our child: reaped, it leaves its group
        return [entry for entry in live_processes() if entry.pgid in groups]

    def signal_groups(sig: signal.Signals, found: list[ProcessEntry]) -> None:
        for pgid in {entry.pgid for entry in found}:
            with contextlib.suppress(ProcessLookupError):  # the last of them ended in between
                os.killpg(pgid, sig)

    if found := left():
        signal_groups(signal.SIGTERM, found)
        if found := wait_until_none(left, timeout):
            signal_groups(signal.SIGKILL, found)
            remaining = wait_until_none(left, 10)
            assert not remaining, "still running after SIGKILL:\n" + "\n".join(entry.describe() for entry in remaining)
    for process in processes:
        process.wait()
