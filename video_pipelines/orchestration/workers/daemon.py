"""`video-pipelines daemon`: `dagster-daemon run` with its sensor and run-queue loops sped up.

Why: Dagster 1.13's sensor daemon loops at most every 5 s (`MIN_INTERVAL_LOOP_TIME`) and the run queue
every 1 s at least, waiting in 0.5 s slices: 2.0-3.3 s median from submission to run creation
(`benchmarks/bench_workers.py`). Passes every SENSOR_LOOP_SECONDS / RUN_QUEUE_SECONDS cost one
indexed query each (pooled connections, deployment/postgres.py); a larger configured interval is kept.
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
    from dagster._daemon.cli import run_command

    speed_up_loops()
    try:
        run_command.main(args=list(argv), prog_name="video-pipelines daemon", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
