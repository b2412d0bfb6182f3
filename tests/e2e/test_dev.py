"""`video-pipelines dev` as a user runs it: the webserver, the daemon and the API on the embedded instance, a real
process tree, stopped by SIGTERM or Ctrl-C with nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def running() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every running process; zombies have ended."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.parent.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """The processes under `root`, as (pid -> start time) so that a reused pid is not counted."""
    table = running()
    found: dict[int, str] = {}
    parents = {root}
    while parents:
        parents = {pid for pid, (parent, _) in table.items() if parent in parents and pid not in found}
        found.update({pid: table[pid][1] for pid in parents})
    return found


def still_running(recorded: dict[int, str]) -> list[str]:
    table = running()
    left = [pid for pid, started in recorded.items() if pid in table and table[pid][1] == started]
    return [f"{pid}: {command_of(pid)}" for pid in left]


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(ended)"


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_dev_stops_every_process_it_started(tmp_path: Path, stop_signal: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    port, api_port = free_port(), free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        dev = subprocess.Popen(
            ["video-pipelines", "dev", "--port", str(port), "--api-port", str(api_port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    recorded: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        # The API's health is 200 once the daemon beats: the daemon and the code servers have started.
        while not (answers(f"http://127.0.0.1:{port}/server_info") and healthy(f"http://127.0.0.1:{api_port}/health")):
            assert dev.poll() is None, log_path.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "dev did not serve in 240 s\n" + log_path.read_text()[-4000:]
            time.sleep(1)
        text = log_path.read_text(errors="replace")
        assert f"API on http://127.0.0.1:{api_port}" in text  # its URL, printed
        assert httpx.get(f"http://127.0.0.1:{api_port}/health").json() == {
            "database": "ok", "daemon": "ok", "storage": "ok"
        }  # fmt: skip
        # Without DAGSTER_HOME: the embedded instance in the folder dev was started from.
        assert (tmp_path / ".dagster_home" / "video_pipelines.db").exists()
        recorded = descendants(dev.pid)
        # dagster dev, its webserver and daemon (and their code servers), and the API.
        assert len(recorded) >= 4, still_running(recorded)

        dev.send_signal(stop_signal)
        assert dev.wait(timeout=40) == 0, log_path.read_text(errors="replace")[-4000:]
        deadline = time.monotonic() + 30
        while still_running(recorded) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert still_running(recorded) == []
        assert not answers(f"http://127.0.0.1:{port}/server_info") and not answers(
            f"http://127.0.0.1:{api_port}/health"
        )
    finally:
        for pid in [pid for pid, started in recorded.items() if running().get(pid, (0, ""))[1] == started]:
            os.kill(pid, signal.SIGKILL)
        if dev.poll() is None:
            dev.kill()
            dev.wait()
