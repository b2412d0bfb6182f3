"""`video-pipelines demo`: the main job on embedded defaults, end to end, with a readable report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from video_pipelines.examples import example_plan
from video_pipelines.instance import prepare_dagster_home
from video_pipelines.orchestration.config import PlanConfig
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.plan import load_plan_json, parse_plan
from video_pipelines.plan.results import VideoResult


def run_plan_in_process(plan_wire: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `execute_plan` on `plan_wire` in this process, against `instance`."""
    plan = parse_plan(plan_wire)
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(plan)})
    return execute_plan_job().execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def node_results(result: dg.ExecuteInProcessResult) -> dict[str, VideoResult]:
    """Each node's video, from the run's asset materializations."""
    results: dict[str, VideoResult] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata = materialization.metadata
        results[str(metadata["node_id"].value)] = VideoResult.from_wire(metadata["result"].value)  # type: ignore[arg-type]
    return results


def run_demo(plan_file: str | None = None) -> int:
    home = prepare_dagster_home()
    plan_wire = load_plan_json(Path(plan_file).read_text()) if plan_file else example_plan("product_demo")
    print(f"DAGSTER_HOME={home}", file=sys.stderr)
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan_wire, instance)
    report = {
        "runId": result.run_id,
        "status": "completed" if result.success else "failed",
        "jobs": {node_id: video.to_wire() for node_id, video in node_results(result).items()},
    }
    print(json.dumps(report, indent=2))
    return 0 if result.success else 1
