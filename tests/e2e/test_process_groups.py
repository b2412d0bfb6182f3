"""`stop_process_group` (tests/process_table.py), which every end-to-end test's teardown relies on, on a real group."""

from __future__ import annotations

import subprocess
import time

from ..process_table import process_group, stop_process_group


def test_stopping_a_group_ends_every_process_of_it_not_just_its_leader() -> None:
    # The leader ends at SIGTERM; its child ignores it, as a Dagster code server goes on while its runs do.
    leader = subprocess.Popen(["sh", "-c", "(trap '' TERM; exec sleep 300) & wait"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(process_group(leader.pid)) < 2:
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    [child] = [entry for entry in process_group(leader.pid) if entry.pid != leader.pid]
    started = time.monotonic()
    stop_process_group(leader, timeout=1)
    assert process_group(leader.pid) == [], "a process of the group outlived stop_process_group"
    assert leader.returncode is not None and time.monotonic() - started < 10
    assert child.command.startswith("sleep 300")
