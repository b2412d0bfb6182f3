"""Warm run workers: broker and result backend from the environment, and run priorities on them.

The launcher and the worker app both build their configuration from `celery_settings()`, so they never
disagree. The brokers order Celery's `priority` in opposite directions: RabbitMQ delivers a higher number
first (within x-max-priority 10); kombu's Redis transport BRPOPs its lists in `priority_steps` order, so
a LOWER number goes first, and its default steps (0, 3, 6, 9) would merge neighbours: ours are 0..9.

Amazon SQS (kombu's SQS transport) has neither message priority nor Celery's broadcast commands (its
transport declares no fanout exchange, so workers start no remote control): runs reach the workers in the
order they were sent, priority acts in Dagster's run queue only, and what ping and revoke do on the other
brokers is done through the database and the instance instead (the workers' beats, the worker's cancel watch).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from video_pipelines.errors import UsageError
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.vocabulary import Priority

BROKER_URL_ENV = "VIDEO_PIPELINES_BROKER_URL"
RESULT_BACKEND_ENV = "VIDEO_PIPELINES_RESULT_BACKEND"
QUEUE_ENV = "VIDEO_PIPELINES_QUEUE"
# dagster-celery's queue name: its routes and the queue it declares (with x-max-priority 10) use it.
DEFAULT_QUEUE = "dagster"
# RabbitMQ's priority range for dagster-celery's queue (x-max-priority).
AMQP_MAX_PRIORITY = 10
REDIS_PRIORITY_STEPS = list(range(10))
SQS_WAIT_SECONDS = 10
SQS_VISIBILITY_TIMEOUT_SECONDS = 600


class BrokerKind(StrEnum):
    REDIS = "redis"
    AMQP = "amqp"
    SQS = "sqs"

    @property
    def remote_control(self) -> bool:
        """Whether Celery's broadcasts (ping, revoke, inspect) reach the workers: not on SQS, which has no fanout."""
        return self is not BrokerKind.SQS

    @property
    def orders_by_priority(self) -> bool:
        """Whether the broker delivers a higher-priority message first: SQS delivers in the order it received."""
        return self is not BrokerKind.SQS


_SCHEMES = (
    dict.fromkeys(("redis", "rediss"), BrokerKind.REDIS)
    | dict.fromkeys(("amqp", "amqps", "pyamqp"), BrokerKind.AMQP)
    | {"sqs": BrokerKind.SQS}
)


def broker_kind(url: str) -> BrokerKind:
    """Which broker a URL names; raises UsageError for anything but Redis, RabbitMQ or SQS."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise UsageError(
            f"{BROKER_URL_ENV}: the broker must be redis://..., amqp://... or sqs://... "
            f"(got scheme {scheme or 'none'!r})"
        )
    return _SCHEMES[scheme]


def celery_priority(dagster_priority: int, kind: BrokerKind) -> int | None:
    """The Celery `priority` that makes `kind` deliver a run of this `dagster/priority` in Dagster's order;
    None where the broker has no priority (SQS)."""
    if not kind.orders_by_priority:
        return None
    # 0..10 with higher first; each 2 points of Dagster priority move one Celery step.
    higher_first = max(0, min(AMQP_MAX_PRIORITY, 5 + dagster_priority // 2))
    if kind is BrokerKind.AMQP:
        return higher_first
    return max(0, min(REDIS_PRIORITY_STEPS[-1], AMQP_MAX_PRIORITY - higher_first))


def priority_of_tag(value: str | None) -> int:
    """The `dagster/priority` tag as an int: missing or not a number is normal (0), as Dagster reads it."""
    try:
        return int(value) if value is not None else Priority.NORMAL.dagster_priority
    except ValueError:
        return Priority.NORMAL.dagster_priority


@dataclass(frozen=True)
class WorkerSettings:
    """Where runs are queued and where their task states are kept."""

    broker_url: str
    result_backend: str
    queue: str = DEFAULT_QUEUE

    @property
    def kind(self) -> BrokerKind:
        return broker_kind(self.broker_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        broker = env.get(BROKER_URL_ENV, "").strip()
        if not broker:
            raise UsageError(
                f"no broker configured: set {BROKER_URL_ENV} (e.g. redis://127.0.0.1:6379/0 or "
                "amqp://guest:guest@127.0.0.1:5672//)"
            )
        kind = broker_kind(broker)
        backend = env.get(RESULT_BACKEND_ENV, "").strip()
        if not backend and kind is not BrokerKind.REDIS:
            raise UsageError(
                f"{RESULT_BACKEND_ENV} is required with a RabbitMQ or SQS broker: a redis://... or "
                "db+postgresql://... backend (run monitoring reads task states from the daemon, "
                "so rpc:// cannot serve it)"
            )
        backend = backend or broker
        # Only backends any process can read: rpc:// answers only the process that sent the task.
        scheme = urlsplit(backend).scheme.lower()
        if scheme not in ("redis", "rediss") and not scheme.startswith("db+"):
            raise UsageError(
                f"{RESULT_BACKEND_ENV}: use a redis://... or db+postgresql://... result backend "
                f"(got {scheme or 'none'!r}): run monitoring reads task states from the daemon, "
                "which rpc:// cannot serve"
            )
        if scheme.startswith("db+"):
            # Celery's database backend is SQLAlchemy, whose 2.1 maps postgresql:// to psycopg 3 (not installed).
            backend = "db+" + psycopg2_url(backend.removeprefix("db+"))
        return cls(broker_url=broker, result_backend=backend, queue=env.get(QUEUE_ENV, "").strip() or DEFAULT_QUEUE)


def celery_settings(settings: WorkerSettings) -> dict[str, Any]:
    """Celery configuration shared by the launcher and the workers.

    Early acknowledgement on purpose: a redelivered run would start again and pay its providers again;
    run monitoring fails a run whose worker died instead, and it is resumed with the provider-job ledger.
    """
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_default_queue": settings.queue,
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        # STARTED is stored with the worker's hostname and the child's pid: the health check pings that worker.
        "task_track_started": True,
        "result_extended": True,
        # One run per child at a time, and no run waiting inside a busy worker while another is idle.
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
        # A run is long: keep its task state for a week (the default is one day).
        "result_expires": 7 * 24 * 3600,
    }
    if settings.kind is BrokerKind.REDIS:
        config["broker_transport_options"] = {
            "priority_steps": REDIS_PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "priority",
        }
        # Reserve no more tasks than free children: a prefetched run would wait behind a long one
        # while a higher-priority run arrives after it (Redis only; RabbitMQ's prefetch 1 suffices).
        config["worker_disable_prefetch"] = True
    elif settings.kind is BrokerKind.SQS:
        config["broker_transport_options"] = {
            # Long polling: a run's message is received as it arrives (no client-side wait after an empty
            # poll), and an idle worker costs one ReceiveMessage per 10 s per queue.
            "wait_time_seconds": SQS_WAIT_SECONDS,
            "polling_interval": 0,
            # A message a worker received but has not started (every child busy) comes back to the queue
            # after this, for another worker; a started run's message is already deleted (early ack).
            "visibility_timeout": SQS_VISIBILITY_TIMEOUT_SECONDS,
        }
    return config


def local_artifacts_warning(
    settings: WorkerSettings, storage_url: str | None, aws_endpoint_url: str | None = None
) -> str | None:
    """A warning when artifacts are on this machine's disk but the broker may serve other machines."""
    # Imported here: the storage package loads FFmpeg's operations, which no command writing dagster.yaml needs.
    from video_pipelines.storage.factory import STORAGE_URL_ENV

    broker_url = settings.broker_url
    if settings.kind is BrokerKind.SQS:
        # sqs:// names no host: the queue lives at AWS_ENDPOINT_URL (an SQS-compatible server), else at AWS.
        broker_url = aws_endpoint_url or "https://sqs.amazonaws.com"
    broker_host = (urlsplit(broker_url).hostname or "").lower()
    if storage_url and not storage_url.startswith("file:"):
        return None
    if broker_host in ("localhost", "::1") or broker_host.startswith("127."):
        return None
    where = storage_url or "the default folder under DAGSTER_HOME"
    return (
        f"artifacts are stored on a local disk ({where}) but the broker is not on this machine: "
        "every worker, the daemon and the API must share that disk, or set "
        f"{STORAGE_URL_ENV}=s3://bucket/prefix"
    )


@dataclass(frozen=True)
class RunWorker:
    """The worker process that took a run's task: the Celery node name and the child's pid."""

    hostname: str
    pid: int | None = None

    @classmethod
    def from_started_meta(cls, meta: object) -> RunWorker | None:
        if not isinstance(meta, Mapping) or not isinstance(meta.get("hostname"), str):
            return None
        pid = meta.get("pid")
        return cls(meta["hostname"], pid if isinstance(pid, int) else None)

    @classmethod
    def from_tag(cls, value: str | None) -> RunWorker | None:
        if not value:
            return None
        hostname, _, pid = value.partition(" pid ")
        return cls(hostname, int(pid) if pid.isdigit() else None)

    def tag(self) -> str:
        return f"{self.hostname} pid {self.pid}"

    def describe(self) -> str:
        return f"run worker {self.hostname}" + (f" (pid {self.pid})" if self.pid is not None else "")


@dataclass
class WorkerWatch:
    """Whether the workers of running runs still answer; one miss (a GC pause, a slow broker) is tolerated."""

    misses_allowed: int = 1
    clock: Callable[[], float] = time.monotonic
    _misses: dict[str, tuple[float, int]] = field(default_factory=dict)  # the first miss's time, the count

    def missed(self, run_id: str, worker: RunWorker) -> str | None:
        """Record a missed answer; the failure message once the worker counts as gone, else None."""
        now = self.clock()
        first, count = self._misses.get(run_id, (now, 0))
        self._misses[run_id] = (first, count + 1)
        if count + 1 <= self.misses_allowed:
            return None
        return f"{worker.describe()} is gone: no answer for {now - first:.0f} s"

    def forget(self, run_id: str) -> None:
        """The run's worker answered, or the run is no longer running: its misses start again from none."""
        self._misses.pop(run_id, None)
