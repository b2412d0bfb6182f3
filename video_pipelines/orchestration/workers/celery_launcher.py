"""`VideoCeleryRunLauncher`: dagster-celery's `CeleryRunLauncher` (0.29.27) with four defects fixed.

- priority: `dagster/priority` mapped to the broker's order (RabbitMQ serves higher first, Redis lower);
- cancel: revoke with SIGINT, not SIGTERM: Dagster turns it into a clean cancel and the prefork child
  survives (upstream's SIGTERM kills it mid-run, leaving the run CANCELING until a timeout);
- dead workers: the result backend still says STARTED for a SIGKILLed worker's task, so we ping the
  worker named in the STARTED meta; the run is tagged `video/lost_worker` and failed, then resumed;
- lost launches: a broker restarted without its data drops queued tasks, and on SQS a worker that stops or
  dies during its long poll takes a message away for the visibility timeout (the server hands it to the
  abandoned request); `lost_in_broker` finds them from the workers' beats, so the `lost_launches` sensor
  fails the run as lost (resumed) instead of leaving it STARTING.

On SQS no broadcast reaches the workers (no ping, revoke or inspect): a worker answers by its beat in the
deployment's database (`submissions.worker_beats`), and a cancel is seen by the worker's own watch of the run
(celery_worker.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

import dagster as dg
from celery import Celery  # type: ignore[import-untyped]  # celery ships no types
from dagster import Field, Noneable, StringSource
from dagster._config import UserConfigSchema
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._serdes import ConfigurableClassData
from dagster_celery import defaults
from dagster_celery.config import DEFAULT_CONFIG
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG, DAGSTER_CELERY_RUN_PRIORITY_TAG, DAGSTER_CELERY_TASK_ID_TAG
from kombu.entity import Queue
from kombu.exceptions import OperationalError as BrokerError

from video_pipelines.deployment.workers import (
    AMQP_MAX_PRIORITY,
    BROKER_URL_ENV,
    RESULT_BACKEND_ENV,
    BrokerKind,
    RunWorker,
    WorkerSettings,
    WorkerWatch,
    celery_priority,
    celery_settings,
    priority_of_tag,
)
from video_pipelines.executions.records import LOST_WORKER_TAG, WORKER_TAG
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.worker_beats import WorkerBeats

PRIORITY_TAG = "dagster/priority"
# A live worker answers a ping from its main process at once, even with every child busy.
PING_TIMEOUT_SECONDS = 2.0
# Answers (and silences) are reused this long, so many runs on one worker cost one ping per poll.
PING_CACHE_SECONDS = 5.0
# The task states of a STARTED run that is still running. PENDING is "no record": the result backend lost
# it (Redis restarted without its data); answering UNKNOWN would make run monitoring fail a healthy run.
_RUNNING_STATES = frozenset({"STARTED", "PENDING"})
# A run STARTING this long may have lost its task: a worker with a free child takes one within milliseconds.
LOST_LAUNCH_SECONDS = 10.0


def app_config(settings: WorkerSettings) -> dict[str, Any]:
    """dagster-celery's defaults under ours; the Redis transport options keep its publish retries."""
    ours = celery_settings(settings)
    return {
        **DEFAULT_CONFIG,
        **ours,
        "broker_transport_options": {
            **dict(defaults.broker_transport_options),
            **ours.get("broker_transport_options", {}),
        },
    }


def make_celery_app(settings: WorkerSettings) -> Celery:
    """The workers' Celery app, configured exactly as the launcher's: dagster-celery's routes and queue, ours."""
    app: Celery = make_app(  # type: ignore[no-untyped-call]
        app_args={
            "broker": settings.broker_url,
            "backend": settings.result_backend,
            "config_source": app_config(settings),
            "task_default_queue": settings.queue,
        }
    )
    ensure_queue(app, settings.queue)
    return app


def ensure_queue(app: Celery, name: str) -> None:
    """Declare `name` as dagster-celery declares its queue: RabbitMQ refuses two declarations that differ."""
    if name not in app.amqp.queues:
        arguments = {"x-max-priority": AMQP_MAX_PRIORITY}
        app.amqp.queues.add(Queue(name, routing_key=f"{name}.#", queue_arguments=arguments))  # type: ignore[no-untyped-call]


def workers_answering(
    app: Celery, kind: BrokerKind, nodes: Sequence[str], timeout: float, beats: WorkerBeats | None = None
) -> set[str]:
    """Which of the worker `nodes` answer: a ping through the broker, or on SQS a fresh beat in `beats` (by default
    this process's deployment database)."""
    if kind.remote_control:
        replies = app.control.ping(destination=list(nodes), timeout=timeout)
        return {name for reply in replies for name in reply if name in nodes}
    alive = {beat.name for beat in (beats or WorkerBeats(SubmissionStore.shared())).alive()}
    return alive & set(nodes)


class VideoCeleryRunLauncher(CeleryRunLauncher):
    def __init__(
        self,
        broker: str | None = None,
        backend: str | None = None,
        default_queue: str | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        environ = dict(os.environ)
        if broker:
            environ[BROKER_URL_ENV] = broker
        if backend:
            environ[RESULT_BACKEND_ENV] = backend
        settings = WorkerSettings.from_env(environ)
        self.settings = replace(settings, queue=default_queue) if default_queue else settings
        self._watch = WorkerWatch()
        self._pings: dict[str, tuple[float, bool]] = {}
        self._beats: WorkerBeats | None = None
        super().__init__(
            default_queue=self.settings.queue,
            broker=self.settings.broker_url,
            backend=self.settings.result_backend,
            config_source=app_config(self.settings),
            inst_data=inst_data,
        )
        ensure_queue(self.celery, self.settings.queue)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        def optional(description: str) -> Field:
            return Field(Noneable(StringSource), is_required=False, description=description)

        return {
            "broker": optional(f"The broker URL (redis://, amqp:// or sqs://). Default: ${BROKER_URL_ENV}."),
            "backend": optional(
                "The result backend (redis:// or db+...). Default: $VIDEO_PIPELINES_RESULT_BACKEND, "
                "else the broker when it is Redis."
            ),
            "default_queue": optional("The queue of runs without a queue tag."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def _launch_celery_task_run(self, run: dg.DagsterRun, task_signature: Any, routing_key: str) -> None:
        tags: dict[str, str] = {}
        priority = celery_priority(priority_of_tag(run.tags.get(PRIORITY_TAG)), self.settings.kind)
        if DAGSTER_CELERY_RUN_PRIORITY_TAG not in run.tags and priority is not None:
            tags[DAGSTER_CELERY_RUN_PRIORITY_TAG] = str(priority)
            self._instance.add_run_tags(run.run_id, tags)
        ensure_queue(self.celery, self._queue_of(run))
        try:
            super()._launch_celery_task_run(run.with_tags({**run.tags, **tags}), task_signature, routing_key)
        except Exception as exc:
            # Dagster fails a run whose launch raised; tagged lost, it is resumed by a new run (none of it ran).
            # Only when the broker or result backend was unreachable (Celery's Redis backend wraps it in RuntimeError).
            unreachable = (BrokerError, *getattr(self.celery.backend, "connection_errors", ()))
            if isinstance(exc, unreachable) or isinstance(exc.__cause__, unreachable):
                message = f"the broker could not take the run: {exc}".strip()
                self._instance.add_run_tags(run.run_id, {LOST_WORKER_TAG: message})
            raise

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        # Reported first, as DefaultRunLauncher does, so the interrupted run ends CANCELED, not FAILURE.
        self._instance.report_run_canceling(run)
        if task_id is None:
            return False
        if self.settings.kind.remote_control:
            self.celery.control.revoke(task_id, terminate=True, signal="SIGINT")
        # Else (SQS) the worker running the run sees it CANCELING and interrupts it itself (celery_worker.py).
        if self.celery.AsyncResult(task_id).state == "PENDING":
            # Still in the broker: no worker will run it (revoked; on SQS, Dagster refuses a CANCELED run), so
            # nothing else would end the run.
            self._instance.report_run_canceled(run, "canceled before a worker took it")
        return True

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a STARTING run whose task no worker took yet (revoked, CANCELED at once); False otherwise."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.status is not dg.DagsterRunStatus.STARTING:
            return False
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id is None or self.celery.AsyncResult(task_id).state != "PENDING":
            return False
        # Should a worker take it meanwhile, it finds the run CANCELED and does not start it (Dagster's execute_run).
        if self.settings.kind.remote_control:
            self.celery.control.revoke(task_id)
        self._instance.report_run_canceled(run, "canceled before a worker took it")
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no Celery task yet")
        result = self.celery.AsyncResult(task_id)
        if result.state in _RUNNING_STATES:
            worker = self._worker_of(run, result)
            if worker is None or self._answers(worker.hostname):
                self._watch.forget(run.run_id)
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            result = self.celery.AsyncResult(task_id)  # it may have ended while we waited for the ping
            if result.state in _RUNNING_STATES:
                message = self._watch.missed(run.run_id, worker)
                if message is None:
                    return CheckRunHealthResult(WorkerStatus.RUNNING, f"{worker.describe()} missed an answer")
                return self._fail(run, message, lost=True)
        self._watch.forget(run.run_id)
        if result.state not in ("SUCCESS", "FAILURE"):
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"Celery task state {result.state}")
        current = self._instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS)  # it ended as we looked
        # Its task ended and the run did not: the worker could not record the end (the database was away, the
        # child died: WorkerLostError). Lost, so its execution is resumed, not failed with no trace of why.
        worker_name = result.worker or "its run worker"
        how = "ended" if result.state == "SUCCESS" else f"failed ({result.info!r})"
        return self._fail(
            run, f"the Celery task of the run {how} on {worker_name} without the run's end recorded", lost=True
        )

    def lost_in_broker(self, runs: Sequence[dg.DagsterRun]) -> dict[str, str]:
        """Of STARTING `runs`, those whose task the broker lost, by run id with why: no worker holds it (running or
        waiting for a child), though a worker of its queue is idle. The workers' beats tell, on every broker."""
        pending = [
            (run, task_id)
            for run in runs
            if (task_id := run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)) is not None
            and self.celery.AsyncResult(task_id).state == "PENDING"
        ]
        if not pending:
            return {}
        workers = self.beats.alive()
        # A task a worker just took (its STARTED state lost by the result backend) or holds for a busy child.
        held = {task for worker in workers for task in (*worker.tasks, *worker.waiting)}
        lost: dict[str, str] = {}
        for run, task_id in pending:
            queue = self._queue_of(run)
            idle = [worker.name for worker in workers if queue in worker.queues and worker.idle]
            if idle and task_id not in held:
                lost[run.run_id] = (
                    f"the broker lost its Celery task {task_id}: no worker took it, though {idle[0]} has a free child"
                )
        return lost

    def fail_lost_launch(self, run: dg.DagsterRun, message: str) -> None:
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id is not None and self.settings.kind.remote_control:
            # Should the task surface after all, no worker runs it (nor would Dagster: the run failed).
            self.celery.control.revoke(task_id)
        self._fail(run, message, lost=True)

    def _queue_of(self, run: dg.DagsterRun) -> str:
        return run.tags.get(DAGSTER_CELERY_QUEUE_TAG, self.default_queue)

    @staticmethod
    def _worker_of(run: dg.DagsterRun, result: Any) -> RunWorker | None:
        """From the STARTED meta, or the `video/worker` tag when the backend lost the state (PENDING)."""
        if result.state == "STARTED":
            return RunWorker.from_started_meta(result.info)
        return RunWorker.from_tag(run.tags.get(WORKER_TAG))

    def _fail(self, run: dg.DagsterRun, message: str, *, lost: bool = False) -> CheckRunHealthResult:
        if lost:  # tagged before the failure, so whoever reacts to the failure knows the execution is resumable
            self._instance.add_run_tags(run.run_id, {LOST_WORKER_TAG: message})
        # Reported here, with our message alone: else the monitoring daemon fails the run with a message
        # wrapping ours in this result's repr, which status and the webhook would show.
        self._instance.report_run_failed(run, message)
        return CheckRunHealthResult(WorkerStatus.FAILED, message)

    @property
    def beats(self) -> WorkerBeats:
        """The workers' beats in the deployment's database, opened at the first use."""
        if self._beats is None:
            self._beats = WorkerBeats(SubmissionStore.shared())
        return self._beats

    def _answers(self, hostname: str) -> bool:
        now = time.monotonic()
        cached = self._pings.get(hostname)
        if cached is not None and now - cached[0] < PING_CACHE_SECONDS:
            return cached[1]
        kind = self.settings.kind
        beats = None if kind.remote_control else self.beats
        answered = bool(workers_answering(self.celery, kind, [hostname], PING_TIMEOUT_SECONDS, beats))
        self._pings[hostname] = (time.monotonic(), answered)
        return answered
