"""Benchmark the reuse lookup: `NodeResultIndex.find` and `find_many` as the index grows.

Fills a fresh SQLite store, and a fresh PostgreSQL database (created on the server of
--postgres, dropped afterwards), with node results across --tenants tenants, growing it to
each of --sizes recorded lineages in turn. At each size it prints, in microseconds:
- `find` for --lookups random lineages, half recorded ones (hits) and half not (misses:
  never recorded, or recorded for another tenant): median and p95 per lookup;
- `find_many` for a 10-node plan (--plan-nodes; about half of its lineages recorded),
  --plans plans: median and p95 per call, and the median per node;
- `record` (one upsert and the release of a claim) of --records new results: median and p95.

A lookup is one primary-key probe, so its time should grow with log n, not with n: compare
the rows of one backend. The rows are filled with multi-row INSERTs (the fill is not what is
measured); PostgreSQL's statistics are refreshed (ANALYZE) before each measurement, as
autovacuum would do for a table this size.

Run from the repository root: python benchmarks/bench_reuse_lookup.py [--sizes 1000,10000,100000]
[--count 10000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres | --no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from video_pipelines.submissions import CachedNode, NodeResultIndex, SubmissionStore
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.submissions.schema import node_results

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
FILL_BATCH = 5_000


def lineage(n: int) -> str:
    return hashlib.sha256(f"bench lineage {n}".encode()).hexdigest()


def tenant(n: int, tenants: int) -> str:
    return f"tenant-{n % tenants}"


def result_wire(n: int) -> dict[str, Any]:
    return {
        "url": f"s3://bench/artifacts/{n}.mp4",
        "duration": 4.0,
        "width": 1280,
        "height": 720,
        "aspectRatio": "16:9",
        "sizeBytes": 1_000_000 + n,
        "sha256": hashlib.sha256(f"bytes {n}".encode()).hexdigest(),
        "status": "completed",
    }


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty database on `admin_url`'s server, dropped afterwards (as tests.conftest.fresh_database)."""
    name = f"vp_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(psycopg2_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def fill(store: SubmissionStore, start: int, stop: int, tenants: int) -> None:
    """Results number `start` to `stop - 1`, lineage n under tenant n % tenants."""
    now = datetime.now(UTC)
    for low in range(start, stop, FILL_BATCH):
        rows = [
            {
                "tenant": tenant(n, tenants),
                "lineage": lineage(n),
                "execution_id": f"exec_{n // 10}",
                "node_id": f"node{n % 10}",
                "operation": "generateVideo",
                "run_id": f"run-{n // 10}",
                "result": result_wire(n),
                "cost_usd": 0.05,
                "recorded_at": now,
            }
            for n in range(low, min(low + FILL_BATCH, stop))
        ]
        with store.engine.begin() as connection:
            connection.execute(node_results.insert(), rows)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as connection:
            connection.exec_driver_sql(f"ANALYZE {node_results.name}")


def timed_us(calls: list[Callable[[], object]]) -> list[float]:
    durations = []
    for call in calls:
        started = time.perf_counter_ns()
        call()
        durations.append((time.perf_counter_ns() - started) / 1_000)
    return durations


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


@dataclass(frozen=True)
class Measured:
    find: list[float]
    find_many: list[float]
    record: list[float]


def measure(store: SubmissionStore, size: int, args: argparse.Namespace, rng: random.Random) -> Measured:
    index = NodeResultIndex(store)

    def find_call(n: int, hit: bool) -> Callable[[], object]:
        if hit:
            return lambda: index.find(tenant(n, args.tenants), lineage(n))
        # A miss: a lineage never recorded, or a recorded one asked for by another tenant.
        if n % 2:
            return lambda: index.find(tenant(n, args.tenants), lineage(size + 1_000_000 + n))
        return lambda: index.find(tenant(n + 1, args.tenants), lineage(n))

    def plan_call() -> Callable[[], object]:
        who = rng.randrange(args.tenants)
        # Lineages of one tenant: about half recorded ones, half new ones.
        numbers = [rng.randrange(size // args.tenants) * args.tenants + who for _ in range(args.plan_nodes)]
        wanted = [lineage(n if rng.random() < 0.5 else size + 2_000_000 + n) for n in numbers]
        return lambda: index.find_many(tenant(who, args.tenants), wanted)

    lookups = [find_call(rng.randrange(size), hit=i % 2 == 0) for i in range(args.lookups)]
    rng.shuffle(lookups)
    timed_us(lookups[:20])  # warm the connection pool and the caches before measuring
    find = timed_us(lookups)
    find_many = timed_us([plan_call() for _ in range(args.plans)])
    new = [
        CachedNode(
            tenant=tenant(n, args.tenants),
            lineage=lineage(n),
            execution_id=f"exec_bench_{n}",
            node_id="clip",
            operation="generateVideo",
            run_id=f"run-bench-{n}",
            result=result_wire(n),
            cost_usd=0.05,
        )
        for n in range(size + 3_000_000, size + 3_000_000 + args.records)
    ]
    record = timed_us([lambda node=node: index.record(node) for node in new])
    # Leave the table at `size` rows for the next, larger fill.
    with store.engine.begin() as connection:
        connection.execute(node_results.delete().where(node_results.c.execution_id.like("exec_bench_%")))
    return Measured(find, find_many, record)


def run_backend(label: str, url: str, sizes: list[int], args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with SubmissionStore(url, secret_key="bench") as store:
        index = NodeResultIndex(store)
        filled = 0
        for size in sizes:
            started = time.perf_counter()
            fill(store, filled, size, args.tenants)
            filled = size
            fill_s = time.perf_counter() - started
            assert index.count() == size
            measured = measure(store, size, args, rng)
            many_median = statistics.median(measured.find_many)
            print(
                f"{label:<10} {size:>9,} {statistics.median(measured.find):>10.0f} {p95(measured.find):>8.0f}"
                f" {many_median:>14.0f} {p95(measured.find_many):>8.0f} {many_median / args.plan_nodes:>9.0f}"
                f" {statistics.median(measured.record):>11.0f} {p95(measured.record):>8.0f}"
                f"   (filled in {fill_s:.1f} s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument("--sizes", default="1000,10000,100000", help="recorded lineages to measure at, ascending")
    sizing.add_argument("--count", type=int, help="measure at this one size only (instead of --sizes)")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--plan-nodes", type=int, default=10)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    postgres = parser.add_mutually_exclusive_group()
    postgres.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a server to create a fresh database on")
    postgres.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = [args.count] if args.count is not None else sorted(int(size) for size in args.sizes.split(","))

    print(
        f"{args.tenants} tenants; find: {args.lookups} lookups (half hits); find_many: {args.plans} plans of "
        f"{args.plan_nodes} nodes; record: {args.records} upserts. Microseconds."
    )
    print(
        f"{'backend':<10} {'results':>9} {'find p50':>10} {'p95':>8} {'find_many p50':>14} {'p95':>8}"
        f" {'per node':>9} {'record p50':>11} {'p95':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_backend("sqlite", f"sqlite:///{Path(tmp) / 'video_pipelines.db'}", sizes, args)
    if args.no_postgres:
        return
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(fresh_postgres(args.postgres))
        except sa.exc.OperationalError as exc:
            print(f"postgresql: not measured, the server cannot be reached ({exc.orig})")
            return
        run_backend("postgresql", url, sizes, args)


if __name__ == "__main__":
    main()
