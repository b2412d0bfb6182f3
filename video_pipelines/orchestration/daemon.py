"""`video-pipelines daemon`: Dagster's own daemon (`dagster-daemon run`), its sensors evaluated every second.

Why: Dagster 1.13's sensor daemon goes through its sensors at most every 5 s
(`MIN_INTERVAL_LOOP_TIME`, a constant of `dagster/_daemon/sensor.py`). The plan sensor
long-polls inside a tick (`sensors.py`), but a tick that finds a submission must return to
launch it, and the next submission then waits for the next loop: 2.0-3.3 s median from
submission to run creation (`benchmarks/bench_workers.py`), most of a warm worker's start.
The loop reads the constant on every pass, so setting it before the daemon starts is the
whole change. Likewise the run queue: `run_queue.dequeue_interval_seconds` takes whole
seconds and 1 is the least, so a new run waited 0.5 s on average (0.6-0.8 s measured) before
it was launched; with 1 configured the queue is looked at every RUN_QUEUE_SECONDS instead
(Dagster's interval daemons wait in 0.5 s slices: that is the floor). A larger configured
interval is kept as it is. Everything else is `dagster-daemon run`, with its options.

What it costs: each pass asks the code server to evaluate every sensor that is due; ours
ask for at most one evaluation per second each (`minimum_interval_seconds=1`), so the
webhook sensors also see a run's end sooner. `dagster-daemon run` keeps working with the
same instance and workspace, only slower to pick submissions and run ends up.
"""

from __future__ import annotations

from collections.abc import Sequence

SENSOR_LOOP_SECONDS = 1
RUN_QUEUE_SECONDS = 0.5


def speed_up_loops() -> None:
    """In this process: sensors every SENSOR_LOOP_SECONDS; a run queue configured at 1 s, every RUN_QUEUE_SECONDS."""
    import dagster._daemon.sensor as sensor_daemon
    from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator

    sensor_daemon.MIN_INTERVAL_LOOP_TIME = SENSOR_LOOP_SECONDS
    configured = QueuedRunCoordinator.__dict__["dequeue_interval_seconds"].fget

    def dequeue_interval(coordinator: QueuedRunCoordinator) -> float:
        seconds = float(configured(coordinator))
        return RUN_QUEUE_SECONDS if seconds <= 1 else seconds

    QueuedRunCoordinator.dequeue_interval_seconds = property(dequeue_interval)  # type: ignore[assignment,method-assign]


def run_daemon(argv: Sequence[str]) -> int:
    """Run `dagster-daemon run <argv>` with faster loops (`speed_up_loops`); returns its exit code."""
    from dagster._daemon.cli import run_command

    speed_up_loops()
    try:
        run_command.main(args=list(argv), prog_name="video-pipelines daemon", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
