"""Benchmark a catalog retention pass (`prune_catalog`) on PostgreSQL: what an hourly tick costs.

Fills the node-result partitions of a fresh Dagster instance (a fresh PostgreSQL database on
the server of --postgres, dropped afterwards) with --recent executions created a day ago and
--old executions created 40 days ago with no run left (2 nodes each, so 2 partitions), then
runs a 30-day pass twice and prints for each: seconds, per execution, how many run queries it
made (one per 200 executions whose age their id does not settle), and how many executions the
sensor's 20 s budget covers at that rate.

1. the first pass deletes the old executions' partitions (a share of a run query, two deletes each);
2. the second finds only recent executions: their `exec_<ULID>` ids say they began after the
   cutoff, so it reads no runs; its time is the listing of the partitions.

Run from the repository root: python benchmarks/bench_catalog_retention.py [--recent 5000] [--old 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
from ulid import ULID

from tests.conftest import fresh_database
from video_pipelines.deployment.instance import render_instance_yaml
from video_pipelines.executions import RunView
from video_pipelines.orchestration.catalog import retention as catalog_retention
from video_pipelines.orchestration.catalog.assets import partition_key, partitions_of
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import Operation

DAY = 86_400.0
NODES = (("clip", Operation.GENERATE_VIDEO), ("square", Operation.REFRAME))


def fill(instance: dg.DagsterInstance, count: int, age_days: float) -> None:
    start = time.time() - age_days * DAY
    ids = [f"exec_{ULID.from_timestamp(start + n / 1000)}" for n in range(count)]
    for node_id, operation in NODES:
        instance.add_dynamic_partitions(partitions_of(operation), [partition_key(i, node_id) for i in ids])


def counting_run_reads() -> tuple[list[int], Callable[[], None]]:
    """Count `runs_of_executions` calls (one run query each) until the returned undo is called."""
    calls = [0]
    original = DagsterRunRecords.runs_of_executions

    def counted(self: DagsterRunRecords, execution_ids: Sequence[str]) -> dict[str, list[RunView]]:
        calls[0] += 1
        return original(self, execution_ids)

    DagsterRunRecords.runs_of_executions = counted  # type: ignore[method-assign]

    def undo() -> None:
        DagsterRunRecords.runs_of_executions = original  # type: ignore[method-assign]

    return calls, undo


def timed_pass(instance: dg.DagsterInstance, label: str) -> None:
    calls, undo = counting_run_reads()
    try:
        started = time.perf_counter()
        report = catalog_retention.prune_catalog(instance, timedelta(days=30))
        seconds = time.perf_counter() - started
    finally:
        undo()
    executions = len(report.pruned) + report.kept
    budget = catalog_retention.SENSOR_BUDGET_SECONDS
    # What bounds a tick: the pruned executions when there are any, else the listing of them all.
    bound, unit = (len(report.pruned), "pruned execution") if report.pruned else (executions, "execution kept")
    per = seconds / bound if bound else 0.0
    print(
        f"{label}: {seconds:.2f} s, {len(report.pruned)} executions pruned ({report.partitions_deleted} partitions), "
        f"{report.kept} kept, {calls[0]} run queries; {per * 1000:.3f} ms per {unit}: "
        f"a {budget:g} s sensor tick covers ~{int(budget / per) if per else 0}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recent", type=int, default=5000)
    parser.add_argument("--old", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(render_instance_yaml(postgres=True))
        os.environ.update({"DAGSTER_HOME": str(home), "VIDEO_PIPELINES_DATABASE_URL": database_url})
        subprocess.run(["dagster", "instance", "migrate"], check=True, capture_output=True)
        with dg.DagsterInstance.get() as instance:
            fill(instance, args.recent, age_days=1)
            fill(instance, args.old, age_days=40)
            print(f"PostgreSQL, {args.recent} recent + {args.old} old executions, {len(NODES)} partitions each")
            timed_pass(instance, "pass 1 (deletes the old)")
            timed_pass(instance, "pass 2 (all recent)")


if __name__ == "__main__":
    main()
