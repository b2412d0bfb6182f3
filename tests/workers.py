"""Real `video-pipelines worker` processes on the machine's Redis or RabbitMQ, for end-to-end tests."""

from __future__ import annotations

import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest

from video_pipelines.deployment.workers import WorkerSettings
from video_pipelines.orchestration.workers.celery_launcher import make_celery_app

from .processes import DagsterDeployment

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def require_service(url: str) -> None:
    """A broker the tests need: missing is a failure, never a skip (.ci/run starts them)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{url} does not answer ({exc}): start it as .ci/run does")


def broker_env(broker: str = REDIS_URL, backend: str | None = None) -> dict[str, str]:
    """The environment of a deployment on `broker`, with a queue of its own (others may share the broker)."""
    require_service(broker)
    env = {"VIDEO_PIPELINES_BROKER_URL": broker, "VIDEO_PIPELINES_QUEUE": f"test-{uuid.uuid4().hex[:10]}"}
    if backend:
        require_service(backend)
        env["VIDEO_PIPELINES_RESULT_BACKEND"] = backend
    return env


def node_name(deployment: DagsterDeployment, name: str) -> str:
    return f"{name}-{deployment.env['VIDEO_PIPELINES_QUEUE']}@localhost"


def start_worker(deployment: DagsterDeployment, name: str, *, concurrency: int = 1) -> str:
    """Start `video-pipelines worker` as `name` (its log is logs/<name>.log); returns its node name."""
    node = node_name(deployment, name)
    deployment.start(name, ["video-pipelines", "worker", f"--concurrency={concurrency}", f"--name={node}"])
    return node


def wait_for_workers(deployment: DagsterDeployment, nodes: list[str], timeout: float = 120) -> None:
    """Until every node answers a ping (it has loaded our code and consumes its queue)."""
    app = make_celery_app(WorkerSettings.from_env(deployment.env))
    deadline = time.monotonic() + timeout
    try:
        while True:
            replies = app.control.ping(destination=nodes, timeout=1.0)
            answered = {name for reply in replies for name in reply}
            if answered >= set(nodes):
                return
            for name, process in deployment.processes.items():
                assert process.poll() is None, f"{name} exited\n{deployment.log_tail()}"
            assert time.monotonic() < deadline, (
                f"workers {set(nodes) - answered} never answered\n{deployment.log_tail()}"
            )
    finally:
        app.close()
