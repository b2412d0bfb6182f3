"""`video-pipelines dev`: dagster dev (webserver and daemon) and the HTTP API, on the embedded default.

Two child processes, `dagster dev` and `video-pipelines serve` (and a third, one warm
`video-pipelines worker`, when $VIDEO_PIPELINES_BROKER_URL is set: the embedded instance then
launches runs through the broker; without a broker, Dagster's default launcher runs them, so a
fresh machine needs nothing more), stopped together: Ctrl-C
reaches both (they share the terminal's process group), a SIGTERM to this process is passed
on to both, and when one of them ends by itself the other is stopped as Ctrl-C would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg

from video_pipelines.api import ApiSettings
from video_pipelines.instance import prepare_dagster_home, write_workspace
from video_pipelines.submissions import SubmissionStore
from video_pipelines.workers import BROKER_URL_ENV, WorkerSettings

STOP_TIMEOUT_SECONDS = 60


def run_dev(*, host: str, port: int, api_port: int) -> int:
    """Run the webserver on `port` and the API on `api_port` (and a worker with a broker) until stopped."""
    home = prepare_dagster_home()
    workspace = write_workspace(home)
    api = ApiSettings.from_env(host=host, port=api_port)  # a bad API setting stops here, before anything runs
    # Create the instance's and the store's tables now: two processes creating a new SQLite storage at once collide.
    with dg.DagsterInstance.get(), SubmissionStore.from_env(home):
        pass
    print(f"DAGSTER_HOME={home}; webserver on http://{host}:{port}; API on {api.url}", file=sys.stderr, flush=True)
    commands = [
        ["dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)],
        [sys.executable, "-m", "video_pipelines.cli", "serve", "--host", host, "--port", str(api_port)],
    ]
    if os.environ.get(BROKER_URL_ENV):
        WorkerSettings.from_env()  # an unusable broker or backend stops here, before anything runs
        commands.append([sys.executable, "-m", "video_pipelines.cli", "worker", "--concurrency", "2"])
    # Started in the background of a script, this process ignores SIGINT, and its children would inherit
    # that (dagster dev then ignores SIGTERM too): take it back, so that Ctrl-C and SIGTERM stop them all.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    processes = [subprocess.Popen(command, env=os.environ.copy()) for command in commands]
    stopping = False

    def pass_on(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        stopping = True  # Ctrl-C reached both children as well: each stops by itself
    finally:
        for process in processes:
            if not stopping and process.poll() is None:
                process.send_signal(signal.SIGINT)  # the other one ended: stop this one as Ctrl-C would
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    failed = [process.returncode for process in processes if process.returncode not in (0, -signal.SIGINT)]
    return 0 if stopping or not failed else failed[0]
