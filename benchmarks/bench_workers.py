"""Benchmark warm Celery run workers against Dagster's default launcher, on a real daemon + PostgreSQL.

Submissions go straight into the submission store (`client.submit` on the local deployment,
the path the HTTP API takes after authentication), so the numbers are the deployment's, not a
CLI's start-up. Prints:
- submit -> run STARTED (RUN_START), median over `--count` one-node plans submitted one after
  another, with two warm workers and with the default launcher (target: <= 1.0 s warm);
- executions/min for a burst of `--burst` one-node plans, with one and with two workers
  (concurrency 2 each; target >= 60/min), from the first submission to the last run's end;
- for the two-worker burst, where the CPU went: CPU-seconds per execution of each process of the
  deployment (with its children: the daemon's and webserver's code servers, a worker's pool) and
  of PostgreSQL's backends, and the PostgreSQL connections opened per execution (from
  pg_stat_database; a connection costs PostgreSQL a forked backend).

Run from the repository root: python benchmarks/bench_workers.py [--count 10] [--burst 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg

from tests.conftest import fresh_database
from tests.processes import CLIENT_ENV, DagsterDeployment, dagster_deployment
from tests.workers import broker_env, start_worker, wait_for_workers
from video_pipelines.doors import client
from video_pipelines.executions import EXECUTION_ID_TAG


def plan(index: int) -> dict[str, object]:
    params = {"prompt": f"bench {index}", "duration": 1, "resolution": 64}
    return {"jobs": [{"id": "clip", "type": "generateVideo", "params": params}]}


def run_record(instance: dg.DagsterInstance, execution_id: str) -> dg.RunRecord | None:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={EXECUTION_ID_TAG: execution_id}), limit=1)
    return records[0] if records else None


@contextmanager
def deployment_with(workers: int, tmp: Path) -> Iterator[tuple[DagsterDeployment, client.Deployment]]:
    env = {"VIDEO_PIPELINES_SECRET_KEY": "bench", "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1"}
    if workers:
        env |= broker_env()
    tmp.mkdir(parents=True)
    with fresh_database() as url, dagster_deployment(tmp, url, extra_env=env, celery=bool(workers)) as deployment:
        if workers:
            wait_for_workers(deployment, [start_worker(deployment, f"w{i}", concurrency=2) for i in range(workers)])
        saved = {name: os.environ.get(name) for name in CLIENT_ENV}
        os.environ.update({name: deployment.env[name] for name in CLIENT_ENV if name in deployment.env})
        try:
            with client.deployment() as target:
                yield deployment, target
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def event_time(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> float:
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    assert records, f"no {event_type.value} event for run {run_id}"
    return records[0].event_log_entry.timestamp


def submit_to_started(target: client.Deployment, count: int) -> dict[str, list[float]]:
    """Seconds from submission to run STARTED, and its shares: to the run's creation (the
    submission sensor), from creation to STARTING (Dagster's run queue), from STARTING to
    STARTED (the launcher sends the run, a worker or a new process starts it)."""
    latencies: dict[str, list[float]] = {"total": [], "sensor": [], "run queue": [], "launcher + worker": []}
    for index in range(count + 1):  # the first warms each path (worker child, sensor); not counted
        submitted = time.time()
        execution_id = client.submit(plan(index), target=target)
        final = client.wait(execution_id, timeout=120, target=target)
        assert final["status"] == "completed", final
        record = run_record(target.instance, execution_id)
        assert record is not None and record.start_time is not None
        created = record.create_timestamp.timestamp()
        if index:
            latencies["total"].append(record.start_time - submitted)
            latencies["sensor"].append(created - submitted)
            starting = event_time(target.instance, record.dagster_run.run_id, dg.DagsterEventType.RUN_STARTING)
            latencies["run queue"].append(starting - created)
            latencies["launcher + worker"].append(record.start_time - starting)
    return latencies


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(deployment: DagsterDeployment) -> dict[str, float]:
    """CPU-seconds so far of each started process's session (it and its children, reaped or alive),
    and of all PostgreSQL server processes (other databases' too: keep the machine quiet)."""
    sessions = {process.pid: name for name, process in deployment.processes.items()}
    totals = dict.fromkeys([*sessions.values(), "postgresql"], 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        session = int(fields[3])
        used = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
        if session in sessions:
            totals[sessions[session]] += used
        elif command.startswith(b"postgres"):
            totals["postgresql"] += used
    return totals


def postgres_sessions() -> int:
    """Connections PostgreSQL has accepted since its statistics were reset, over all databases."""
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SELECT sum(sessions) FROM pg_stat_database"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def burst_rate(target: client.Deployment, count: int) -> float:
    started = time.time()
    ids = [client.submit(plan(1000 + index), target=target) for index in range(count)]
    ended = []
    for execution_id in ids:
        assert client.wait(execution_id, timeout=600, target=target)["status"] == "completed"
        record = run_record(target.instance, execution_id)
        assert record is not None and record.end_time is not None
        ended.append(record.end_time)
    return count / ((max(ended) - started) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, workers in (("default launcher", 0), ("two warm workers", 2)):
            with deployment_with(workers, Path(tmp) / label.replace(" ", "_")) as (deployment, target):
                latencies = submit_to_started(target, args.count)
                total = latencies["total"]
                results[f"submit -> STARTED, {label}"] = (
                    f"median {statistics.median(total):.2f} s (min {min(total):.2f}, max {max(total):.2f}, "
                    f"n={len(total)}); of which "
                    + ", ".join(f"{share} {statistics.median(latencies[share]):.2f} s" for share in list(latencies)[1:])
                )
                if workers:
                    cpu_before, sessions_before = cpu_seconds(deployment), postgres_sessions()
                    results[f"burst of {args.burst}, two workers (concurrency 2)"] = (
                        f"{burst_rate(target, args.burst):.1f} executions/min"
                    )
                    time.sleep(1)  # PostgreSQL counts a session when it ends; pooled ones are still open
                    sessions = postgres_sessions() - sessions_before
                    cpu_after = cpu_seconds(deployment)
                    shares = {name: (cpu_after[name] - cpu_before[name]) / args.burst for name in cpu_after}
                    results["  CPU-s per execution"] = (
                        ", ".join(
                            f"{name} {used:.3f}" for name, used in sorted(shares.items(), key=lambda item: -item[1])
                        )
                        + f"; total {sum(shares.values()):.3f}"
                    )
                    results["  PostgreSQL connections per execution"] = f"{sessions / args.burst:.1f}"
        with deployment_with(1, Path(tmp) / "one_worker") as (_deployment, target):
            results[f"burst of {args.burst}, one worker (concurrency 2)"] = (
                f"{burst_rate(target, args.burst):.1f} executions/min"
            )
    for name, value in results.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
