"""A real `video-pipelines serve` process on a free port, for tests and benchmarks.

    with api_process(env={"DAGSTER_HOME": str(home)}, logs=tmp_path) as server:
        httpx.get(f"{server.url}/health")

`env` is laid over this process's environment (so PATH and the rest carry over). The server
is ready when it answers `/health` (uvicorn answers only once the app's start-up, which opens
the store and the Dagster instance, is done), whatever that answer is: without a daemon it
is a 503. Its output goes to `<logs>/api-<port>.log`, which `DagsterDeployment.log_tail` picks up
when `logs` is a deployment's log folder.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from .conftest import free_port
from .process_table import stop_process_group

REPO = Path(__file__).resolve().parents[1]
# A port taken between free_port() and the server's bind: try another.
_PORT_TAKEN = "address already in use"


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""


def _wait_until_serving(server: ApiServer, timeout: float) -> bool:
    """True once the server answers; False if it exited because its port was taken; raises otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if _PORT_TAKEN in server.log_tail().lower():
                return False
            raise AssertionError(f"video-pipelines serve exited with {server.process.returncode}\n{server.log_tail()}")
        try:
            httpx.get(f"{server.url}/health", timeout=5)
            return True
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"video-pipelines serve did not answer within {timeout:.0f}s\n{server.log_tail()}")


@contextmanager
def api_process(
    env: Mapping[str, str] | None = None,
    *,
    logs: Path | None = None,
    cwd: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[ApiServer]:
    """Start `video-pipelines serve` with `env` over this environment; stop it (SIGTERM, then SIGKILL) after.

    On `port` when given (a restarted server where clients expect the old one), else on a free one.
    """
    with tempfile.TemporaryDirectory(prefix="vp-api-") as scratch:
        folder = logs if logs is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **(env or {})}
        for _ in range(1 if port is not None else 3):
            chosen = port or free_port()
            log = folder / f"api-{chosen}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    ["video-pipelines", "serve", "--host", host, "--port", str(chosen)],
                    cwd=cwd or REPO,
                    env=full_env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            server = ApiServer(process, host, chosen, log)
            try:
                if not _wait_until_serving(server, timeout):
                    continue
                yield server
                return
            finally:
                stop_process_group(process)
        raise AssertionError(f"video-pipelines serve found no free port in 3 tries\n{server.log_tail()}")
