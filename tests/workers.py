"""Real `video-pipelines worker` processes on the machine's Redis or RabbitMQ, or SQS on moto's server."""

from __future__ import annotations

import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest

from video_pipelines.deployment.workers import WorkerSettings
from video_pipelines.orchestration.workers.celery_launcher import make_celery_app, workers_answering
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.worker_beats import WorkerBeats

from .processes import DagsterDeployment

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
# kombu's SQS transport: the endpoint comes from AWS_ENDPOINT_URL (sqs_env), the region from AWS_DEFAULT_REGION.
SQS_URL = "sqs://"


def require_service(url: str) -> None:
    """A broker the tests need: missing is a failure, never a skip (.ci/run starts them)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{url} does not answer ({exc}): start it as .ci/run does")


def broker_env(broker: str = REDIS_URL, backend: str | None = None) -> dict[str, str]:
    """The environment of a deployment on `broker`, with a queue of its own (others may share the broker)."""
    if urlsplit(broker).hostname:  # sqs:// names no host: its endpoint is AWS_ENDPOINT_URL
        require_service(broker)
    env = {"VIDEO_PIPELINES_BROKER_URL": broker, "VIDEO_PIPELINES_QUEUE": f"test-{uuid.uuid4().hex[:10]}"}
    if backend:
        require_service(backend)
        env["VIDEO_PIPELINES_RESULT_BACKEND"] = backend
    return env


def sqs_env(endpoint: str) -> dict[str, str]:
    """A deployment on SQS at `endpoint` (moto's server), with Redis as the result backend."""
    return {
        **broker_env(SQS_URL, REDIS_URL),
        "AWS_ENDPOINT_URL": endpoint,
        # moto takes any credentials; set so that no AWS configuration of the machine is used.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def node_name(deployment: DagsterDeployment, name: str) -> str:
    return f"{name}-{deployment.env['VIDEO_PIPELINES_QUEUE']}@localhost"


def start_worker(deployment: DagsterDeployment, name: str, *, concurrency: int = 1) -> str:
    """Start `video-pipelines worker` as `name` (its log is logs/<name>.log); returns its node name."""
    node = node_name(deployment, name)
    deployment.start(name, ["video-pipelines", "worker", f"--concurrency={concurrency}", f"--name={node}"])
    return node


def wait_for_workers(deployment: DagsterDeployment, nodes: list[str], timeout: float = 120) -> None:
    """Until every node answers a ping, or on SQS beats (it has loaded our code and consumes its queue)."""
    settings = WorkerSettings.from_env(deployment.env)
    app = make_celery_app(settings)
    # On SQS the beats are in the deployment's database.
    store = None if settings.kind.remote_control else SubmissionStore(deployment.env["VIDEO_PIPELINES_DATABASE_URL"])
    beats = WorkerBeats(store) if store is not None else None
    deadline = time.monotonic() + timeout
    try:
        while True:
            answered = workers_answering(app, settings.kind, nodes, timeout=1.0, beats=beats)
            if answered >= set(nodes):
                return
            for name, process in deployment.processes.items():
                assert process.poll() is None, f"{name} exited\n{deployment.log_tail()}"
            assert time.monotonic() < deadline, (
                f"workers {set(nodes) - answered} never answered\n{deployment.log_tail()}"
            )
            time.sleep(0.2)  # a ping waits for answers; a beat is read at once
    finally:
        app.close()
        if store is not None:
            store.close()
