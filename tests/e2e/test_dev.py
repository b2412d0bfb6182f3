"""`video-pipelines dev` as a user runs it: the webserver, the daemon and the API on the embedded instance, a real
process tree, stopped by SIGTERM or Ctrl-C with nothing left; started by its full path, quiet while idle."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from video_pipelines.doors import client
from video_pipelines.doors.dev import relay

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


def start_dev(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`command` (a `dev` command line) in its own session, its output in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_serving(dev: subprocess.Popen[bytes], ui: str, api: str, log_path: Path) -> None:
    """Until the webserver answers and the API's health is 200: the daemon beats, the code servers have started."""
    deadline = time.monotonic() + 240
    while not (answers(f"{ui}/server_info") and healthy(f"{api}/health")):
        assert dev.poll() is None, log_path.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, "dev did not serve in 240 s\n" + log_path.read_text()[-4000:]
        time.sleep(1)


def stop_dev(dev: subprocess.Popen[bytes]) -> None:
    dev.send_signal(signal.SIGTERM)
    try:
        dev.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(dev.pid, signal.SIGKILL)
        dev.wait()


def stops_with_everything_it_started(
    dev: subprocess.Popen[bytes], stop_signal: signal.Signals, ui: str, api: str, log_path: Path
) -> None:
    """Stop `dev` with `stop_signal`: it exits 0, and every process under it (recorded now) ends, its ports closed."""
    recorded = descendants(dev.pid)
    try:
        # dagster dev, its webserver and daemon (and their code servers), and the API.
        assert len(recorded) >= 4, still_running(recorded)
        dev.send_signal(stop_signal)
        assert dev.wait(timeout=40) == 0, log_path.read_text(errors="replace")[-4000:]
        # Each child is signaled alone, so dagster dev stops its webserver and daemon before its code server; on a
        # loaded machine a sensor tick may still meet the code server gone (dagster dev's own shutdown order), so
        # its traceback is not asserted away here.
        deadline = time.monotonic() + 30
        while still_running(recorded) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert still_running(recorded) == []
        assert not answers(f"{ui}/server_info") and not answers(f"{api}/health")
    finally:
        for pid in [pid for pid, started in recorded.items() if running().get(pid, (0, ""))[1] == started]:
            os.kill(pid, signal.SIGKILL)


def test_dev_stops_every_process_it_started_on_ctrl_c(tmp_path: Path) -> None:
    """On SIGINT; SIGTERM stops the dev of test_dev_from_a_venv_not_on_path_is_quiet_and_tells_each_execution."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    port, api_port = free_port(), free_port()
    ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    log_path = tmp_path / "dev.log"
    command = ["video-pipelines", "dev", "--port", str(port), "--api-port", str(api_port)]
    dev = start_dev(command, tmp_path, env, log_path)
    try:
        wait_serving(dev, ui, api, log_path)
        text = log_path.read_text(errors="replace")
        assert f"API on {api}" in text  # its URL, printed
        assert httpx.get(f"{api}/health").json() == {"database": "ok", "daemon": "ok", "storage": "ok"}
        # Without DAGSTER_HOME: the embedded instance in the folder dev was started from.
        assert (tmp_path / ".dagster_home" / "video_pipelines.db").exists()
        stops_with_everything_it_started(dev, signal.SIGINT, ui, api, log_path)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()


def test_dev_relays_warnings_and_errors_whole_and_leaves_out_debug_and_info() -> None:
    stamp = "\x1b[32m2026-12-07 11:33:21 +0000\x1b[0m"
    output = [
        f"{stamp} - dagster.daemon.SensorDaemon - \x1b[34mINFO\x1b[0m - Checking for new runs for sensor: x\n",
        f"{stamp} - dagster - DEBUG - execute_plan - 1234 - node[clip] - STEP_START - Started execution\n",
        "  a continuation of the DEBUG record\n",
        'INFO:     127.0.0.1:5000 - "GET /health HTTP/1.1" 200 OK\n',
        "INFO:dagster.daemon:Daemon threads shut down.\n",
        f"{stamp} - dagster - ERROR - execute_plan - 1234 - RUN_FAILURE - Execution of run failed.\n",
        "Traceback (most recent call last):\n",
        "ValueError: the whole error\n",
        f"{stamp} - dagster.daemon - WARNING - a warning\n",
        "a line of no logger\n",
    ]
    out = io.StringIO()
    relay(io.BytesIO("".join(output).encode()), out)
    assert out.getvalue() == "".join(output[5:])


def sensor_ticks(instance: dg.DagsterInstance, name: str) -> int:
    """How many ticks the daemon has recorded for sensor `name`."""
    states = [state for state in instance.all_instigator_state() if state.instigator_name == name]
    return sum(len(instance.get_ticks(state.instigator_origin_id, state.selector_id)) for state in states)


def test_dev_from_a_venv_not_on_path_is_quiet_and_tells_each_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The script beside the interpreter, as in a virtualenv's bin/, with a PATH that lacks that folder.
    script = Path(sys.executable).parent / "video-pipelines"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != script.parent)
    for name in [name for name in os.environ if name.startswith("VIDEO_PIPELINES_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / ".dagster_home"))
    port, api_port = free_port(), free_port()
    ui = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dev.log"
    dev = start_dev([str(script), "dev", "--port", str(port), "--api-port", str(api_port)], tmp_path, env, log_path)
    try:
        wait_serving(dev, ui, f"http://127.0.0.1:{api_port}", log_path)
        deadline = time.monotonic() + 240
        with client.deployment(create=False) as deployment:
            # Idle: three more ticks of the plan sensor (each once printed two lines) print nothing.
            ticks = sensor_ticks(deployment.instance, "submitted_plans")
            while sensor_ticks(deployment.instance, "submitted_plans") < ticks + 3:
                assert time.monotonic() < deadline + 120, "the plan sensor did not tick 3 times"
                time.sleep(1)
            banner = [
                f"DAGSTER_HOME={tmp_path / '.dagster_home'}; webserver on {ui}; API on http://127.0.0.1:{api_port}",
                f"video-pipelines API on http://127.0.0.1:{api_port} (docs at http://127.0.0.1:{api_port}/docs)",
            ]
            assert log_path.read_text().splitlines() == banner

            # An execution: a line per state change, with its run page once it has a run.
            execution_id = client.submit({"jobs": [{"id": "clip", "type": "generateVideo",
                                                    "params": {"prompt": "dev tells", "duration": 1}}]},
                                         target=deployment)  # fmt: skip
            done = client.wait(execution_id, timeout=180, target=deployment)
            assert done["status"] == "completed", done
        completed = re.compile(rf"\d\d:\d\d:\d\d {execution_id} completed {ui}/runs/{done['runId']}$")
        while not completed.match((lines := log_path.read_text().splitlines())[-1]):
            assert time.monotonic() < deadline + 300, "\n".join(lines)
            time.sleep(0.5)
        told = [line.split()[1:] for line in lines[len(banner) :]]
        assert {words[0] for words in told} == {execution_id}, lines
        # Each state once, in order (a poll may miss a run queued for less than a second).
        order = ["pending", "processing", "completed"]
        states = [words[1] for words in told]
        assert states == [state for state in order if state in states] and "processing" in states, lines
        stops_with_everything_it_started(dev, signal.SIGTERM, ui, f"http://127.0.0.1:{api_port}", log_path)
    finally:
        stop_dev(dev)
