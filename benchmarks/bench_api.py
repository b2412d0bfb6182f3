"""Benchmark the HTTP API's submit: latency, concurrency, and the CLI over HTTP vs local.

Starts `video-pipelines serve` on a fresh PostgreSQL database (no daemon: submissions stay
pending, so only the API and the store are measured) and prints
- submit latency over HTTP with one keep-alive client: p50 and p95 over --count submissions
  (target: p95 <= 50 ms on this machine);
- --clients concurrent clients submitting --per-client plans each: every one accepted, and
  none lost or doubled (rows in the store, distinct execution ids, each idempotency key once),
  then every client sending every key again at once: the same ids, no new row;
- `video-pipelines submit` as a process: over HTTP (VIDEO_PIPELINES_API_URL/_KEY, no
  DAGSTER_HOME, no database URL) vs local (DAGSTER_HOME on the same PostgreSQL), median
  of --cli-runs each.

Run from the repository root: python benchmarks/bench_api.py [--count 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.api_process import api_process
from tests.conftest import fresh_database
from video_pipelines.deployment.instance import render_instance_yaml
from video_pipelines.submissions import ApiKeys, SubmissionState, SubmissionStore

SECRET_KEY = "bench-api-passphrase"
# The seed SDK's own JSON: "type": "generate" and "output".
PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "job1", "type": "generate", "params": {"prompt": "Scene 1", "duration": 1}, "output": "$job1"},
        {"id": "job2", "type": "generate", "params": {"prompt": "Scene 2", "duration": 1}, "output": "$job2"},
        {"id": "job3", "type": "merge", "params": {"transition": "crossfade"}, "dependsOn": ["job1", "job2"]},
    ]
}


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def submit(http: httpx.Client, key: str) -> str:
    response = http.post("/api/execute", json=PLAN, headers={"Idempotency-Key": key})
    assert response.status_code == 202, f"{response.status_code}: {response.text[:500]}"
    execution_id: str = response.json()["executionId"]
    return execution_id


def sequential_latency(url: str, api_key: str, count: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for _ in range(10):  # warm the connection, the server's pools and its code paths
            submit(http, f"warm-{uuid.uuid4().hex}")
        seconds: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            submit(http, f"seq-{uuid.uuid4().hex}")
            seconds.append(time.perf_counter() - started)
    return {
        "submissions": count,
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "target_p95_ms": 50,
    }


def concurrently(url: str, api_key: str, keys: list[list[str]]) -> tuple[list[tuple[str, str]], float]:
    """Each list of keys submitted by its own client (own connection), all clients at once."""
    headers = {"Authorization": f"Bearer {api_key}"}

    def one_client(own: list[str]) -> list[tuple[str, str]]:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            return [(key, submit(http, key)) for key in own]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        answers = [pair for result in pool.map(one_client, keys) for pair in result]
    return answers, time.perf_counter() - started


def concurrent_submissions(
    url: str, api_key: str, store: SubmissionStore, clients: int, per_client: int
) -> dict[str, Any]:
    before = {submission.execution_id for submission in store.newest(None, limit=1_000_000)}
    keys = [[f"conc-{client}-{n}-{uuid.uuid4().hex[:8]}" for n in range(per_client)] for client in range(clients)]
    answers, seconds = concurrently(url, api_key, keys)
    ids = {key: execution_id for key, execution_id in answers}
    new_rows = [s for s in store.newest(None, limit=1_000_000) if s.execution_id not in before]
    key_counts = Counter(submission.idempotency_key for submission in new_rows)
    sent = clients * per_client
    # Every client sends every key again, all at once: the same execution for each, and no new row.
    again, _ = concurrently(url, api_key, [[key for row in keys for key in row] for _ in range(clients)])
    after = [s for s in store.newest(None, limit=1_000_000) if s.execution_id not in before]
    result = {
        "clients": clients,
        "submissions": sent,
        "seconds": round(seconds, 2),
        "accepted": len(answers),
        "distinct_execution_ids": len(set(ids.values())),
        "rows_in_store": len(new_rows),
        "keys_stored_once": sum(1 for key in ids if key_counts[key] == 1),
        "resent_concurrently": len(again),
        "resent_same_id": sum(1 for key, execution_id in again if ids[key] == execution_id),
        "rows_after_resend": len(after),
        "all_pending": all(s.state is SubmissionState.PENDING for s in after),
    }
    result["ok"] = (
        result["accepted"] == result["distinct_execution_ids"] == result["rows_in_store"] == sent
        and result["keys_stored_once"] == sent
        and result["resent_same_id"] == result["resent_concurrently"] == sent * clients
        and result["rows_after_resend"] == sent
        and result["all_pending"]
    )
    return result


def median_seconds(runs: int, command: list[str], env: dict[str, str], cwd: Path, *, submits: bool = True) -> float:
    seconds: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        seconds.append(time.perf_counter() - started)
        assert done.returncode == 0, done.stderr
        assert not submits or json.loads(done.stdout)["executionId"].startswith("exec_")
    return statistics.median(seconds)


def cli_timing(url: str, api_key: str, local_env: dict[str, str], runs: int, workdir: Path) -> dict[str, Any]:
    plan = workdir / "plan.json"
    plan.write_text(json.dumps(PLAN))
    command = ["video-pipelines", "submit", str(plan)]
    client_env = {
        name: value for name, value in os.environ.items() if not name.startswith(("DAGSTER_", "VIDEO_PIPELINES_"))
    }
    over_http = median_seconds(
        runs, command, {**client_env, "VIDEO_PIPELINES_API_URL": url, "VIDEO_PIPELINES_API_KEY": api_key}, workdir
    )
    local = median_seconds(runs, command, {**client_env, **local_env}, workdir)
    baseline = median_seconds(runs, [sys.executable, "-c", "pass"], client_env, workdir, submits=False)
    return {
        "runs": runs,
        "over_http_s": round(over_http, 2),
        "local_s": round(local, 2),
        "python_startup_s": round(baseline, 2),
        "local_over_http": round(local / over_http, 1),
    }


def timed(label: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"{label} ...", file=sys.stderr, flush=True)
    return call()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(render_instance_yaml(postgres=True))
        env = {
            "DAGSTER_HOME": str(home),
            "VIDEO_PIPELINES_DATABASE_URL": database_url,
            "VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY,
        }
        subprocess.run(["dagster", "instance", "migrate"], env={**os.environ, **env}, check=True, capture_output=True)
        with SubmissionStore(database_url, secret_key=SECRET_KEY) as store:
            _key, api_key = ApiKeys(store).create("bench", tenant="bench")
            with api_process(env=env, logs=Path(tmp)) as server:
                report = {
                    "sequential": timed("sequential", lambda: sequential_latency(server.url, api_key, args.count)),
                    "concurrent": timed(
                        "concurrent",
                        lambda: concurrent_submissions(server.url, api_key, store, args.clients, args.per_client),
                    ),
                    "cli_submit": timed("cli", lambda: cli_timing(server.url, api_key, env, args.cli_runs, Path(tmp))),
                }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    seq, conc, cli = report["sequential"], report["concurrent"], report["cli_submit"]
    print(
        f"submit over HTTP, one keep-alive client, {seq['submissions']} submissions: p50 {seq['p50_ms']} ms, "
        f"p95 {seq['p95_ms']} ms, max {seq['max_ms']} ms (target: p95 <= {seq['target_p95_ms']} ms)"
    )
    print(
        f"{conc['submissions']} submissions from {conc['clients']} concurrent clients in {conc['seconds']} s: "
        f"{conc['accepted']} accepted, {conc['distinct_execution_ids']} distinct ids, {conc['rows_in_store']} rows, "
        f"{conc['keys_stored_once']} keys stored once; every key resent by every client at once: "
        f"{conc['resent_same_id']}/{conc['resent_concurrently']} same id, {conc['rows_after_resend']} rows "
        f"({'ok' if conc['ok'] else 'LOST OR DOUBLED'})"
    )
    print(
        f"video-pipelines submit (median of {cli['runs']}): over HTTP {cli['over_http_s']} s, "
        f"local {cli['local_s']} s ({cli['local_over_http']}x); python startup alone {cli['python_startup_s']} s"
    )


if __name__ == "__main__":
    main()
