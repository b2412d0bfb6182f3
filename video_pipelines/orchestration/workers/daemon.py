"""`video-pipelines daemon`: Dagster's own daemon (`dagster-daemon run`), its sensors looked at every 0.25 s.

Why: Dagster 1.13's sensor daemon goes through its sensors at most every 5 s
(`MIN_INTERVAL_LOOP_TIME`, a constant of `dagster/_daemon/sensor.py`). The plan sensor
long-polls inside a tick (`sensors.py`), but a tick that finds a submission must return to
launch it, and the next submission then waits for the next tick: 2.0-3.3 s median from
submission to run creation (`benchmarks/bench_workers.py`), most of a warm worker's start.
A sensor is due again `minimum_interval_seconds` (1 s, the least Dagster takes) after its last
tick started, but only a loop pass starts it: with a pass every second, a tick that started
just after a pass waited almost 2 s for the next (0.94 s median from submission to run
creation once runs took well under a second). Passes every SENSOR_LOOP_SECONDS start each
tick within that of its being due; a pass reads the sensors' states (one query) and starts
nothing that is not due. The loop reads the constant on every pass, so setting it before the
daemon starts is the whole change. Likewise the run queue: `run_queue.dequeue_interval_seconds`
takes whole seconds and 1 is the least, so a new run waited 0.5 s on average (0.6-0.8 s
measured) before it was launched; with 1 configured the queue is looked at every
RUN_QUEUE_SECONDS instead. Its daemon's loop (Dagster's `IntervalDaemon.core_loop`) waits
between passes in 0.5 s slices, so that loop is replaced by the same loop waiting in
RUN_QUEUE_SLICE_SECONDS slices (a pass reads the queue and the runs in progress: a few
indexed queries). A larger configured interval is kept as it is. Everything else is
`dagster-daemon run`, with its options.

What it costs: each tick asks the code server to evaluate a sensor; ours ask for at most one
evaluation per second each (`minimum_interval_seconds=1`), so the webhook sensors also see a
run's end sooner. The passes are cheap because the instance's storage pools its connections
(video_pipelines/deployment/postgres.py). `dagster-daemon run` keeps working with the same instance and
workspace, only slower to pick submissions and run ends up.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from threading import Event
from typing import Any

SENSOR_LOOP_SECONDS = 0.25
RUN_QUEUE_SECONDS = 0.2
RUN_QUEUE_SLICE_SECONDS = 0.05


def speed_up_loops() -> None:
    """In this process: sensors every SENSOR_LOOP_SECONDS; a run queue configured at 1 s, every RUN_QUEUE_SECONDS."""
    import dagster._daemon.sensor as sensor_daemon
    from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator

    sensor_daemon.MIN_INTERVAL_LOOP_TIME = SENSOR_LOOP_SECONDS  # type: ignore[assignment]  # an int in Dagster; used as seconds to wait
    configured = QueuedRunCoordinator.__dict__["dequeue_interval_seconds"].fget

    def dequeue_interval(coordinator: QueuedRunCoordinator) -> float:
        seconds = float(configured(coordinator))
        return RUN_QUEUE_SECONDS if seconds <= 1 else seconds

    QueuedRunCoordinator.dequeue_interval_seconds = property(dequeue_interval)  # type: ignore[assignment,method-assign]
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    QueuedRunCoordinatorDaemon.core_loop = _core_loop_in_fine_slices  # type: ignore[method-assign,assignment]


def _core_loop_in_fine_slices(daemon: Any, workspace_process_context: Any, shutdown_event: Event) -> Any:
    """Dagster 1.13's `IntervalDaemon.core_loop` (without its jitter, 0 for this daemon), waiting in finer slices."""
    from dagster._daemon.daemon import SpanMarker
    from dagster._utils.error import serializable_error_info_from_exc_info

    while True:
        started = time.time()
        yield SpanMarker.START_SPAN
        try:
            yield from daemon.run_iteration(workspace_process_context)
        except Exception:
            error_info = serializable_error_info_from_exc_info(sys.exc_info())
            daemon._logger.error("Caught error:\n%s", error_info)
            yield error_info
        yield SpanMarker.END_SPAN
        while time.time() - started < daemon.interval_seconds:
            shutdown_event.wait(RUN_QUEUE_SLICE_SECONDS)
            yield None
        yield None


def run_daemon(argv: Sequence[str]) -> int:
    """Run `dagster-daemon run <argv>` with faster loops (`speed_up_loops`); returns its exit code."""
    from dagster._daemon.cli import run_command

    speed_up_loops()
    try:
        run_command.main(args=list(argv), prog_name="video-pipelines daemon", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
