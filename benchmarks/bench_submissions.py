"""Benchmark the daemon-driven doors on a real dagster-daemon with PostgreSQL.

Submits N small plans one after another (each after the previous run ended), each with a
webhook to a receiver on 127.0.0.1, and prints the median and spread of
- submit -> run STARTED (target: median <= 4 s), and
- run end -> webhook received (target: median <= 3 s);
the daemon's 5 s sensor loop (a Dagster constant) is the floor of both.

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

import dagster as dg

from tests.conftest import fresh_database
from tests.processes import dagster_deployment
from tests.receiver import WebhookReceiver
from video_pipelines.doors import client
from video_pipelines.executions import EXECUTION_ID_TAG

PLAN = {"jobs": [{"id": "clip", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}]}


def newest_run(instance: dg.DagsterInstance, execution_id: str) -> dg.RunRecord | None:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={EXECUTION_ID_TAG: execution_id}), limit=1)
    return records[0] if records else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    receiver = WebhookReceiver().start()
    webhook_latencies: list[float] = []
    latencies: list[float] = []
    to_created: list[float] = []
    to_launched: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        env = {"VIDEO_PIPELINES_SECRET_KEY": "bench", "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1"}
        with dagster_deployment(Path(tmp), database_url, extra_env=env) as deployment:
            for name in ("DAGSTER_HOME", "VIDEO_PIPELINES_DATABASE_URL", "VIDEO_PIPELINES_SECRET_KEY"):
                os.environ[name] = deployment.env[name]
            with client.deployment() as target:
                for _ in range(args.count):
                    submitted = time.time()
                    execution_id = client.submit(
                        PLAN,
                        client.SubmitOptions(
                            webhook_url=receiver.url(f"/{len(latencies)}"), webhook_secret="bench-secret"
                        ),
                        target=target,
                    )
                    while True:
                        record = newest_run(target.instance, execution_id)
                        if record is not None and record.start_time is not None:
                            break
                        time.sleep(0.05)
                    latencies.append(record.start_time - submitted)
                    to_created.append(record.create_timestamp.timestamp() - submitted)
                    starting = target.instance.get_records_for_run(
                        record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_STARTING
                    ).records
                    if starting:
                        to_launched.append(starting[0].timestamp - submitted)
                    client.wait(execution_id, target=target)
                    [request] = receiver.wait_for(f"/{len(latencies) - 1}", 1)
                    ended = target.instance.get_run_record_by_id(record.dagster_run.run_id)
                    assert ended is not None and ended.end_time is not None
                    webhook_latencies.append(request.received_at - ended.end_time)
    receiver.stop()
    latencies.sort()
    print(
        f"submit -> run created (sensor): median {statistics.median(to_created):.2f} s; "
        f"-> dequeued and launched: median {statistics.median(to_launched):.2f} s; "
        f"-> STARTED (run worker up): median {statistics.median(latencies):.2f} s"
    )
    webhook_latencies.sort()
    print(
        f"run end -> webhook received over {len(webhook_latencies)} executions: "
        f"median {statistics.median(webhook_latencies):.2f} s, min {webhook_latencies[0]:.2f} s, "
        f"max {webhook_latencies[-1]:.2f} s (target: median <= 3 s)"
    )
    print(
        f"submit -> run STARTED over {len(latencies)} submissions: median {statistics.median(latencies):.2f} s, "
        f"min {latencies[0]:.2f} s, max {latencies[-1]:.2f} s (target: median <= 4 s)"
    )


if __name__ == "__main__":
    main()
