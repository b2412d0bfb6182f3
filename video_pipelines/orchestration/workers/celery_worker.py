"""The Celery app that `video-pipelines worker` runs: warm run workers for `VideoCeleryRunLauncher`.

Definitions are imported in the parent so each prefork child starts with them loaded. Each child dies
with its parent (a SIGKILLed worker leaves no orphan runs) and tags each run with `video/worker`.

On every broker the main process records a beat in the deployment's database (`submissions.worker_beats`:
its name, queues, pool size and the tasks its children run), which `/api/workers` lists, and removes it when
the worker stops cleanly. Where the broker carries no broadcast (SQS), the beat also answers the launcher's
health checks instead of a ping, and a child watches the run it executes, interrupting it with SIGINT once
the run is CANCELING, as the launcher's revoke does on the other brokers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from celery import signals  # type: ignore[import-untyped]  # celery ships no types
from celery.worker import state as worker_state  # type: ignore[import-untyped]
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import unpack_value
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

import video_pipelines.deployment.postgres  # noqa: F401  # the instance's storage, imported before the fork
import video_pipelines.orchestration.definitions as definitions
from video_pipelines.deployment.workers import RunWorker, WorkerSettings, local_artifacts_warning
from video_pipelines.executions.records import WORKER_TAG
from video_pipelines.orchestration.workers.celery_launcher import make_celery_app
from video_pipelines.storage import STORAGE_URL_ENV
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.worker_beats import BEAT_SECONDS, WorkerBeat, WorkerBeats

_PR_SET_PDEATHSIG = 1
TAG_WAIT_SECONDS = 5.0
# How often a child on SQS reads its run's status for a cancel: one indexed query per running run.
CANCEL_POLL_SECONDS = 1.0
logger = logging.getLogger("video_pipelines.worker")

if not os.environ.get("DAGSTER_HOME"):
    raise RuntimeError("DAGSTER_HOME must be set before a run worker starts (the instance the daemon uses)")

settings = WorkerSettings.from_env()
# This child's cancel watches by Celery task id (SQS only).
_watches: dict[str, _CancelWatch] = {}
app = make_celery_app(settings)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
# Build the job once here: a run's code pointer then finds the module imported and its job made.
definitions.defs.get_job_def("execute_plan")


def startup_warnings() -> list[str]:
    warning = local_artifacts_warning(settings, os.environ.get(STORAGE_URL_ENV), os.environ.get("AWS_ENDPOINT_URL"))
    return [warning] if warning else []


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _die_with_parent(**_kwargs: Any) -> None:
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl: nobody will reap or watch this child
        os._exit(1)


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start_beats(sender: Any = None, **_kwargs: Any) -> None:
    """Record this worker's beat now and every BEAT_SECONDS (`sender`: its consumer)."""
    if sender is None:
        return
    consumer = sender

    def beat() -> None:
        try:
            # Celery's own count of running tasks, kept by this (the main) process as the children accept and
            # finish them: what `inspect active` answers on the brokers that carry it.
            running = {str(request.id) for request in list(worker_state.active_requests)}
            # Received, not started: every child busy (a broker that prefetches), or a child just taking it.
            waiting = {str(request.id) for request in list(worker_state.reserved_requests)} - running
            queues = tuple(sorted(consumer.app.amqp.queues.consume_from))
            concurrency = int(consumer.controller.concurrency)
            name, now = consumer.hostname, datetime.now(UTC)
            _beats().record(WorkerBeat(name, queues, concurrency, tuple(sorted(running)), now, tuple(sorted(waiting))))
        except Exception:
            # A database that is briefly away costs a beat; a worker counts as gone only after several.
            logger.exception("could not record this worker's beat")

    beat()
    # On the main process's event loop, as Celery's own event heartbeat: no thread to cross a fork.
    consumer.timer.call_repeatedly(BEAT_SECONDS, beat)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _remove_beat(sender: Any = None, **_kwargs: Any) -> None:
    """A worker that stops cleanly is no longer listed at once (`sender`: the worker, its pool and timer stopped)."""
    try:
        _beats().remove(sender.hostname)
    except Exception:
        logger.exception("could not remove this worker's beat: it is listed until it goes stale")


@functools.cache
def _beats() -> WorkerBeats:
    # The main process's (worker_ready and worker_shutdown are sent there only); a child forgets it (store.py).
    return WorkerBeats(SubmissionStore.shared())


@functools.cache
def _instance() -> dg.DagsterInstance:
    # One per child, made after the fork: a database connection must never cross a fork.
    return dg.DagsterInstance.get()


@signals.task_prerun.connect  # type: ignore[untyped-decorator]
def _record_worker(task: Any = None, kwargs: dict[str, Any] | None = None, **_rest: Any) -> None:
    args = _run_args(kwargs)
    if args is None:
        return
    hostname = getattr(task.request, "hostname", None) if task is not None else None
    if not settings.kind.remote_control and task is not None:
        watch = _watches[task.request.id] = _CancelWatch(args.run_id)
        watch.start()
    try:
        instance = _instance()
        # Run tags are written read-merge-write: wait for the launcher's task id tag, or one write is lost.
        deadline = time.monotonic() + TAG_WAIT_SECONDS
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(args.run_id)
            if run is None or DAGSTER_CELERY_TASK_ID_TAG in run.tags:
                break
            time.sleep(0.02)
        instance.add_run_tags(args.run_id, {WORKER_TAG: RunWorker(hostname or "celery", os.getpid()).tag()})
    except Exception:
        # Where a run ran is shown for convenience: never fail the run over it.
        logger.exception("could not record the worker on run %s", args.run_id)


@signals.task_postrun.connect  # type: ignore[untyped-decorator]
def _after_run(task_id: str | None = None, kwargs: dict[str, Any] | None = None, **_rest: Any) -> None:
    # A run left unfinished by its task (a crash) must not have the next run of this child interrupted for it.
    if task_id is not None and (watch := _watches.pop(task_id, None)) is not None:
        watch.stopped.set()
    args = _run_args(kwargs)
    if args is None:
        return
    try:
        run = _instance().get_run_by_id(args.run_id)
        if run is not None and run.status is dg.DagsterRunStatus.CANCELING:
            # Canceled as a worker took it: Dagster's run worker ignores a CANCELING run ("a duplicate run"), and
            # it would stay CANCELING until run monitoring's cancel timeout (180 s). Its task is over: nothing runs it.
            _instance().report_run_canceled(run, "canceled before its run worker started it")
    except Exception:
        logger.exception("could not end run %s after its task", args.run_id)


def _run_args(kwargs: dict[str, Any] | None) -> ExecuteRunArgs | ResumeRunArgs | None:
    packed = (kwargs or {}).get("execute_job_args_packed") or (kwargs or {}).get("resume_job_args_packed")
    return None if packed is None else unpack_value(packed, as_type=(ExecuteRunArgs, ResumeRunArgs))


class _CancelWatch(threading.Thread):
    """Interrupts this child's run once it is CANCELING (what the launcher's revoke does where it can broadcast).

    SIGINT to its own process, as Celery's revoke(terminate=True, signal="SIGINT") sends it: Dagster turns it into
    a clean cancel of the run, and the warm child lives on. Ends with the run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(name=f"cancel-watch-{run_id}", daemon=True)
        self.run_id = run_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(CANCEL_POLL_SECONDS):
            try:
                run = _instance().get_run_by_id(self.run_id)
            except Exception:
                logger.exception("could not read run %s to see whether it was canceled", self.run_id)
                continue
            if run is None or run.is_finished:
                return
            if run.status is dg.DagsterRunStatus.CANCELING and not self.stopped.is_set():
                logger.info("run %s is canceling: interrupting it", self.run_id)
                os.kill(os.getpid(), signal.SIGINT)
                return
