"""Benchmark variant reuse: french_variant on top of its base vs the same plan from scratch.

Prints wall(variant with base) / wall(same plan from scratch), and the target: the share of
new work (the bare work of the nodes the variant adds, over the bare work of every node)
plus 0.05.

Run: python benchmarks/bench_variants.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, from the repository root

from tests.dagster.harness import run_plan_in_process
from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.doors.demo import serve_voice_tracks
from video_pipelines.examples import example_plan
from video_pipelines.net import AllowedHosts
from video_pipelines.nodes.runner import NodeEnvironment, run_node
from video_pipelines.plan import execution_order, parse_plan
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import resolve
from video_pipelines.storage import LocalArtifactStore


def french(audio_base: str) -> dict[str, Any]:
    plan = example_plan("french_variant")
    for job in plan["jobs"]:
        if "audioUrl" in job["params"]:
            job["params"]["audioUrl"] = f"{audio_base}/french.mp3"
    return plan


def bare_node_seconds(plan_wire: dict[str, Any], workdir: Path) -> dict[str, float]:
    """Seconds of bare work per node (no Dagster), in execution order."""
    resolved = resolve(parse_plan(plan_wire))
    env = NodeEnvironment(store=LocalArtifactStore(workdir), allowed_hosts=AllowedHosts.from_env())
    results: dict[str, VideoResult] = {}
    seconds: dict[str, float] = {}
    for node in execution_order(resolved.plan):
        started = time.perf_counter()
        run = run_node(
            node,
            inputs=resolved.inputs(node, results),
            upstream=resolved.upstream(node, results),
            lineage=resolved.lineage[node.id],
            env=env,
        )
        seconds[node.id] = time.perf_counter() - started
        results[node.id] = run.result
    return seconds


def timed_run(plan_wire: dict[str, Any], instance: dg.DagsterInstance) -> float:
    started = time.perf_counter()
    # Without content-addressed reuse: the variant reuses its base's nodes only, as this benchmark compares.
    result = run_plan_in_process({**plan_wire, "cache": False}, instance)
    elapsed = time.perf_counter() - started
    assert result.success
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as home, serve_voice_tracks() as audio_base:
        os.environ["DAGSTER_HOME"] = home
        os.environ.pop("VIDEO_PIPELINES_DATABASE_URL", None)
        prepare_dagster_home()
        plan = french(audio_base)
        seconds = bare_node_seconds(plan, Path(home) / "bare")
        new_share = (seconds["job5"] + seconds["job6"]) / sum(seconds.values())
        with dg.DagsterInstance.get() as instance:
            os.environ["VIDEO_PIPELINES_STORAGE_URL"] = (Path(home) / "scratch").as_uri()
            scratch = timed_run(plan, instance)
            base = run_plan_in_process(example_plan("product_demo"), instance)
            assert base.success
            variant = timed_run({**plan, "baseExecutionId": base.run_id}, instance)
        print(
            f"french_variant with its base {variant:.2f} s / from scratch {scratch:.2f} s = {variant / scratch:.3f}"
            f" (target: share of new work {new_share:.3f} + 0.05 = {new_share + 0.05:.3f})"
        )


if __name__ == "__main__":
    main()
