"""Benchmark execute_plan against the same work run bare (ratios within one run).

(a) product_demo with 8 s 1280x720 scenes: wall of `execute_plan` / wall of the same
    FFmpeg work (generate x3, crossfade merge) called directly in one process. Target <= 1.15.
(b) a plan of trivial nodes: (wall of execute_plan - wall of the same node work called
    directly) / number of nodes = orchestration seconds per node. Target <= 0.3 s.

execute_plan also runs every node's media checks (a probe and one decoding pass): each line is
printed against the bare work alone, and against the bare work plus the same checks called
directly (`run_node` with `checks`, as the job calls it), which leaves the orchestration alone.

Run: python benchmarks/bench_execute_plan.py [--repeat N]
"""

from __future__ import annotations

import argparse
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
from video_pipelines.examples import example_plan
from video_pipelines.net import AllowedHosts
from video_pipelines.nodes.checks import audio_expected
from video_pipelines.nodes.runner import NodeChecks, NodeEnvironment, run_node
from video_pipelines.operations.checks import DEFAULT_BLOCKING
from video_pipelines.plan import execution_order, lineage_hashes, parse_plan
from video_pipelines.plan.results import VideoResult
from video_pipelines.storage import LocalArtifactStore


def product_demo_8s() -> dict[str, Any]:
    plan = example_plan("product_demo")
    for job in plan["jobs"]:
        if job["type"] == "generateVideo":
            job["params"]["duration"] = 8
    return plan


def trivial_plan(scenes: int = 16, group: int = 4) -> dict[str, Any]:
    """`scenes` tiny clips, merged by `group`, then merged once more: three levels."""
    jobs: list[dict[str, Any]] = [
        {
            "id": f"s{i}",
            "type": "generateVideo",
            "params": {"prompt": f"s{i}", "duration": 1, "resolution": 64},
        }
        for i in range(scenes)
    ]
    merges = []
    for start in range(0, scenes, group):
        merges.append(f"m{start // group}")
        jobs.append({"id": merges[-1], "type": "merge", "dependsOn": [f"s{i}" for i in range(start, start + group)]})
    jobs.append({"id": "final", "type": "merge", "dependsOn": merges})
    return {"jobs": jobs}


def bare(plan_wire: dict[str, Any], workdir: Path, *, checks: bool = False) -> float:
    """The plan's node work called directly, in one process, with no Dagster (and each video's checks)."""
    plan = parse_plan(plan_wire)
    lineage = lineage_hashes(plan)
    audio = audio_expected(plan)
    env = NodeEnvironment(store=LocalArtifactStore(workdir / "bare"), allowed_hosts=AllowedHosts.from_env())
    results: dict[str, VideoResult] = {}
    started = time.perf_counter()
    for node in execution_order(plan):
        run = run_node(
            node,
            inputs=[results[dep] for dep in node.depends_on],
            upstream={dep: results[dep] for dep in node.depends_on},
            lineage=lineage[node.id],
            env=env,
            checks=NodeChecks(audio=audio[node.id], blocking=DEFAULT_BLOCKING) if checks else None,
        )
        results[node.id] = run.result
    return time.perf_counter() - started


def orchestrated(plan_wire: dict[str, Any], workdir: Path) -> float:
    os.environ["VIDEO_PIPELINES_STORAGE_URL"] = (workdir / "job").as_uri()
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        # Computed every time: the benchmark measures running nodes, not reusing them.
        result = run_plan_in_process({**plan_wire, "cache": False}, instance)
        elapsed = time.perf_counter() - started
    assert result.success
    return elapsed


def measure(plan_wire: dict[str, Any], repeat: int) -> tuple[float, float, float]:
    """Best-of-`repeat` walls (bare, bare with checks, orchestrated); each try writes to fresh folders."""
    bare_walls, checked_walls, job_walls = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            bare_walls.append(bare(plan_wire, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            checked_walls.append(bare(plan_wire, Path(tmp), checks=True))
        with tempfile.TemporaryDirectory() as tmp:
            job_walls.append(orchestrated(plan_wire, Path(tmp)))
    return min(bare_walls), min(checked_walls), min(job_walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["DAGSTER_HOME"] = home
        os.environ.pop("VIDEO_PIPELINES_DATABASE_URL", None)
        prepare_dagster_home()
        bare_wall, checked_wall, job_wall = measure(product_demo_8s(), args.repeat)
        print(f"(a) product_demo 8 s 1280x720: execute_plan {job_wall:.2f} s / bare FFmpeg work {bare_wall:.2f} s"
              f" = {job_wall / bare_wall:.3f} (target <= 1.15); / bare work and checks {checked_wall:.2f} s"
              f" = {job_wall / checked_wall:.3f}")  # fmt: skip
        plan = trivial_plan()
        nodes = len(plan["jobs"])
        bare_wall, checked_wall, job_wall = measure(plan, args.repeat)
        print(f"(b) {nodes} trivial nodes: execute_plan {job_wall:.2f} s, bare {bare_wall:.2f} s:"
              f" {(job_wall - bare_wall) / nodes:.3f} s per node (target <= 0.3); bare with checks"
              f" {checked_wall:.2f} s: {(job_wall - checked_wall) / nodes:.3f} s orchestration per node")  # fmt: skip


if __name__ == "__main__":
    main()
