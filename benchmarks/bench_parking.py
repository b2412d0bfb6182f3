"""Benchmark parked runs: executions of remote generations that take the provider `--seconds` each.

The production topology of docs/scaling-out.md on this machine: `video-pipelines daemon`, warm Celery workers on Redis,
PostgreSQL, the API (submissions over HTTP with an API key), and a Replicate-protocol server whose predictions
take a fixed time and then call their `webhook` (signed), as Replicate does. Prints, per scenario:
- wall time from the first submission to the last execution's end, and that over one prediction's time
  (target: 16 executions x 20 s on 2 workers x 2: <= 1.5; it was 4.44 when runs held their worker);
- how the provider saw the creates (first to last) and how many predictions were created (one per node);
- CPU-seconds per execution of the deployment's processes, and the worker's largest resident memory.

`--parking off` runs the same with parking turned off (the runs hold their workers), for comparison.
`--fairness N`: tenant A submits N local executions, then tenant B one, with VIDEO_PIPELINES_TENANT_MAX_RUNS=3;
prints how long B's execution took from its submission to its run's start (target: within 2 s).

Run from the repository root: python benchmarks/bench_parking.py [--executions 16 --seconds 20 --workers 2]
                              python benchmarks/bench_parking.py --executions 200 --seconds 60 --workers 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
import httpx

from benchmarks.bench_workers import cpu_seconds
from tests.api_process import api_process
from tests.conftest import free_port, fresh_database
from tests.e2e.test_parking import SIGNING_SECRET, CallingReplicate
from tests.processes import CLIENT_ENV, dagster_deployment
from tests.unit.test_providers_replicate_fal import TOKEN
from tests.workers import broker_env, start_worker, wait_for_workers
from video_pipelines.executions import EXECUTION_ID_TAG
from video_pipelines.operations import generate_clip
from video_pipelines.submissions import ApiKeys, SubmissionStore

SECRET_KEY = "bench-parking"
IDLE_SECONDS = 10.0


def plan(index: int) -> dict[str, object]:
    params = {"prompt": f"scene {index}", "duration": 1, "provider": "replicate"}
    return {"jobs": [{"id": "gen", "type": "generateVideo", "params": params}]}


def resident_mb(session: int) -> float:
    """The resident memory of every process of one session (a worker and its pool), in MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:
                continue
            total += int((entry / "statm").read_text().split()[1])
        except (OSError, IndexError):
            continue
    return total * 4096 / 1e6


class PeakMemory:
    def __init__(self, sessions: list[int]) -> None:
        self.sessions, self.peak, self._stop = sessions, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, sum(resident_mb(session) for session in self.sessions))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def webhook_to_start(replicate: CallingReplicate, http: httpx.Client) -> list[float]:
    """Seconds from each prediction's webhook to the start of the run that continued its execution."""
    instance = dg.DagsterInstance.get()  # the deployment's: main() exported its client variables
    seconds = []
    for sent, code, answer in replicate.callbacks.values():
        if code != 200 or not answer.get("executionId"):
            continue
        status = http.get(f"/api/execute/{answer['executionId']}/status").json()
        continuation = next((a for a in status["attempts"] if a["reason"] == "continue"), None)
        record = instance.get_run_record_by_id(continuation["runId"]) if continuation else None
        if record is not None and record.start_time is not None:
            seconds.append(record.start_time - sent)
    return seconds


# The phases of a run, each from the first event of one kind to the first of the next (Dagster's own timestamps).
# Event kinds by their value; FORWARDED is the launcher's engine event once the broker took the run's task.
FORWARDED = "forwarded"
_E = dg.DagsterEventType
PHASES = (
    ("to broker", _E.RUN_STARTING.value, FORWARDED),
    ("broker to worker", FORWARDED, _E.RUN_START.value),
    ("to first step", _E.RUN_START.value, _E.STEP_START.value),
    ("steps", _E.STEP_START.value, _E.RUN_SUCCESS.value),
)


def run_phases(instance: dg.DagsterInstance) -> str:
    """Where the runs' time went: the median of each phase, and events per run."""
    phases: dict[str, list[float]] = {"created to started": []} | {name: [] for name, _first, _next in PHASES}
    counts = []
    in_process: dict[int | None, list[tuple[float, float]]] = {}
    for record in instance.get_run_records(dg.RunsFilter(job_name="execute_plan")):
        if record.start_time is not None:
            phases["created to started"].append(record.start_time - record.create_timestamp.timestamp())
        events = instance.all_logs(record.dagster_run.run_id)
        counts.append(len(events))
        first: dict[str, float] = {}
        for event in events:
            kind = event.dagster_event.event_type_value if event.dagster_event else "log"
            if kind == _E.ENGINE_EVENT.value and "forwarded to the broker" in event.message:
                kind = FORWARDED
            first.setdefault(kind, event.timestamp)
        for name, start, end in PHASES:
            if start in first and end in first:
                phases[name].append(first[end] - first[start])
        if _E.RUN_START.value in first and _E.RUN_SUCCESS.value in first:
            pid = next((e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.pid), None)
            in_process.setdefault(pid, []).append((first[_E.RUN_START.value], first[_E.RUN_SUCCESS.value]))
    # A worker child's time between runs: from one run's end to the next one's start in the same process.
    phases["between runs in a child"] = [
        start - end
        for spans in in_process.values()
        for (_s, end), (start, _e) in zip(sorted(spans), sorted(spans)[1:], strict=False)
        if start - end < 5
    ]
    parts = [f"{name} {statistics.median(values):.2f} s" for name, values in phases.items() if values]
    spans = [(start, end) for each in in_process.values() for start, end in each]
    busy = sum(end - start for start, end in spans) / max(1, len(in_process))
    span = max(end for _s, end in spans) - min(start for start, _e in spans) if spans else 0.0
    return (
        f"{len(counts)} runs, median: " + ", ".join(parts) + f"; events per run {statistics.median(counts):.0f}; "
        f"a worker child was in a run {busy / span:.0%} of the {span:.1f} s from the first run's start to the last's end"
    )


def local_plan(index: int) -> dict[str, object]:
    params = {"prompt": f"tenant clip {index}", "duration": 1, "resolution": 64}
    return {"jobs": [{"id": "clip", "type": "generateVideo", "params": params}]}


def fairness(burst: int) -> None:
    os.environ["VIDEO_PIPELINES_TENANT_MAX_RUNS"] = "3"  # read when the instance's dagster.yaml is rendered
    env = {**broker_env(), "VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY, "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1"}
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        fresh_database() as url,
        dagster_deployment(Path(tmp_name), url, extra_env=env, celery=True) as deployment,
    ):
        nodes = [start_worker(deployment, name, concurrency=2) for name in ("w0", "w1")]
        wait_for_workers(deployment, nodes)
        with SubmissionStore(url, secret_key=SECRET_KEY) as store:
            keys = {tenant: ApiKeys(store).create(tenant, tenant=tenant)[1] for tenant in ("acme", "bolt")}
        with api_process(deployment.env, logs=Path(tmp_name) / "api") as api, httpx.Client(base_url=api.url) as http:

            def submit(tenant: str, index: int) -> str:
                answer = http.post(
                    "/api/execute", json=local_plan(index), headers={"Authorization": f"Bearer {keys[tenant]}"}
                )
                assert answer.status_code == 202, answer.text
                return str(answer.json()["executionId"])

            for index in range(burst):
                submit("acme", index)
            time.sleep(3)  # acme's runs are queued and running
            submitted = time.time()
            other = submit("bolt", burst)
            os.environ.update({name: deployment.env[name] for name in CLIENT_ENV if name in deployment.env})
            instance = dg.DagsterInstance.get()
            while True:
                runs = instance.get_run_records(dg.RunsFilter(tags={EXECUTION_ID_TAG: other}), limit=1)
                if runs and runs[0].start_time is not None:
                    break
                assert time.time() - submitted < 300, "bolt's execution never started"
                time.sleep(0.05)
            started = runs[0].start_time - submitted
            created = runs[0].create_timestamp.timestamp() - submitted
            in_progress = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    print(
        f"fairness: tenant acme submitted {burst} executions, then tenant bolt one: bolt's run started "
        f"{started:.2f} s after its submission (its run created after {created:.2f} s; {queued} runs queued, "
        f"{in_progress} started at that moment)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="each prediction's time at the provider")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--parking", choices=("on", "off"), default="on")
    parser.add_argument("--webhooks", choices=("on", "off"), default="on", help="off: the poller finds them")
    parser.add_argument("--fairness", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.fairness:
        fairness(args.fairness)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate_clip(tmp / "clip.mp4", prompt="served", width=160, height=90, duration=1, seed=1)
        clip = (tmp / "clip.mp4").read_bytes()
        replicate = CallingReplicate(auth=f"Bearer {TOKEN}", output=clip, seconds=args.seconds)
        replicate.start()
        port = free_port()
        env = {
            **broker_env(),
            "VIDEO_PIPELINES_SECRET_KEY": SECRET_KEY,
            "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
            "REPLICATE_API_TOKEN": TOKEN,
            "REPLICATE_API_BASE_URL": replicate.base_url,
            "REPLICATE_WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
            "VIDEO_PIPELINES_PARKING": args.parking,
            # Enough for the whole burst: the queue is not what this measures.
            "VIDEO_PIPELINES_PROVIDER_POLL_SECONDS": "5" if args.webhooks == "off" else "60",
        }
        if args.webhooks == "on":
            env["VIDEO_PIPELINES_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        (tmp / "deployment").mkdir()
        try:
            with (
                fresh_database() as url,
                dagster_deployment(tmp / "deployment", url, extra_env=env, celery=True) as deployment,
            ):
                names = [f"w{index}" for index in range(args.workers)]
                nodes = [start_worker(deployment, name, concurrency=args.concurrency) for name in names]
                wait_for_workers(deployment, nodes)
                with SubmissionStore(url, secret_key=SECRET_KEY) as store:
                    _key, api_key = ApiKeys(store).create("bench", tenant="bench")
                with api_process(deployment.env, logs=tmp / "api", port=port) as api:
                    sessions = [deployment.processes[name].pid for name in names]
                    # What the deployment burns doing nothing (sensors ticking, heartbeats), for comparison.
                    idle_before = cpu_seconds(deployment)
                    time.sleep(IDLE_SECONDS)
                    cpu_before = cpu_seconds(deployment)
                    idle = {name: (cpu_before[name] - idle_before[name]) / IDLE_SECONDS for name in cpu_before}
                    headers = {"Authorization": f"Bearer {api_key}"}
                    with (
                        httpx.Client(base_url=api.url, headers=headers, timeout=30) as http,
                        PeakMemory(sessions) as memory,
                    ):
                        started = time.monotonic()
                        ids = []
                        for index in range(args.executions):
                            answer = http.post("/api/execute", json=plan(index))
                            assert answer.status_code == 202, answer.text
                            ids.append(answer.json()["executionId"])
                        # One look at a time, at the oldest execution not seen ended (an end is final): looking
                        # at all of them every turn made the API and PostgreSQL the busiest part of the benchmark.
                        pending = list(ids)
                        deadline = started + 30 * args.seconds + 600
                        while pending:
                            assert time.monotonic() < deadline, f"{len(pending)} executions not ended"
                            answer = http.get(f"/api/execute/{pending[0]}/status")
                            assert answer.status_code == 200, answer.text
                            status = answer.json()
                            if status["status"] in ("completed", "failed", "canceled"):
                                assert status["status"] == "completed", status
                                pending.pop(0)
                            else:
                                time.sleep(0.2)
                        wall = time.monotonic() - started
                    cpu_after = cpu_seconds(deployment)
                    os.environ.update({name: deployment.env[name] for name in CLIENT_ENV if name in deployment.env})
                    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:
                        wake = webhook_to_start(replicate, http)
                    phases = run_phases(dg.DagsterInstance.get())
        finally:
            replicate.stop()
    creates = replicate.creates()
    cpu = sum(cpu_after[name] - cpu_before[name] for name in cpu_after) / args.executions
    print(
        f"{args.executions} executions x a {args.seconds:g} s prediction on {args.workers} worker(s) x "
        f"{args.concurrency}, parking {args.parking}, webhooks {args.webhooks}:"
    )
    print(f"  wall {wall:.1f} s = {wall / args.seconds:.2f} x one prediction")
    print(f"  predictions created: {len(replicate.jobs)}, from first to last create {creates[-1] - creates[0]:.1f} s")
    print(f"  CPU-s per execution {cpu:.3f} (all processes of the deployment and PostgreSQL)")
    shares = sorted(((cpu_after[name] - cpu_before[name]) / args.executions, name) for name in cpu_after)
    print("    " + ", ".join(f"{name} {seconds:.3f}" for seconds, name in reversed(shares) if seconds >= 0.005))
    print(
        f"  idle, CPU-s per second: {sum(idle.values()):.3f} ("
        + ", ".join(f"{name} {idle[name]:.3f}" for name in sorted(idle, key=idle.__getitem__, reverse=True))
        + ")"
    )
    print(f"  workers' peak resident memory {memory.peak:.0f} MB")
    if wake:
        print(
            f"  provider webhook -> continuation run started: median {statistics.median(wake):.2f} s, "
            f"max {max(wake):.2f} s (n={len(wake)})"
        )
    print(f"  runs: {phases}")


if __name__ == "__main__":
    main()
