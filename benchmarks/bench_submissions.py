"""Benchmark the submission door: submit -> run STARTED, on a real dagster-daemon with PostgreSQL.

Submits N small plans one after another (each after the previous run ended) and prints the
median and spread of (run start time - submit time). Target: median <= 4 s; the daemon's
5 s sensor loop is the floor (DAGSTER-FACTS.md).

Run from the repository root: python benchmarks/bench_submissions.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import fresh_database
from tests.processes import dagster_deployment
from video_pipelines import client
from video_pipelines.orchestration.executions import find_run

PLAN = {"jobs": [{"id": "clip", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    latencies: list[float] = []
    to_created: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        env = {"VIDEO_PIPELINES_SECRET_KEY": "bench"}
        with dagster_deployment(Path(tmp), database_url, extra_env=env) as deployment:
            for name in ("DAGSTER_HOME", "VIDEO_PIPELINES_DATABASE_URL", "VIDEO_PIPELINES_SECRET_KEY"):
                os.environ[name] = deployment.env[name]
            with client.deployment() as target:
                for _ in range(args.count):
                    submitted = time.time()
                    execution_id = client.submit(PLAN, target=target)
                    while True:
                        record = find_run(target.instance, execution_id)
                        if record is not None and record.start_time is not None:
                            break
                        time.sleep(0.05)
                    latencies.append(record.start_time - submitted)
                    to_created.append(record.create_timestamp.timestamp() - submitted)
                    client.wait(execution_id, target=target)
    latencies.sort()
    print(
        f"submit -> run created (sensor): median {statistics.median(to_created):.2f} s; "
        f"created -> STARTED (queue + run worker start): median {statistics.median(latencies) - statistics.median(to_created):.2f} s"
    )
    print(
        f"submit -> run STARTED over {len(latencies)} submissions: median {statistics.median(latencies):.2f} s, "
        f"min {latencies[0]:.2f} s, max {latencies[-1]:.2f} s (target: median <= 4 s)"
    )


if __name__ == "__main__":
    main()
