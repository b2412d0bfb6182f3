"""Run `execute_plan` in this process: the harness of the Dagster tests (and the benchmarks)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.plan import parse_plan
from video_pipelines.plan.results import VideoResult


def run_plan_in_process(plan_wire: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `execute_plan` on `plan_wire` in this process, against `instance`."""
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(parse_plan(plan_wire))})
    return execute_plan_job().execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def node_results(result: dg.ExecuteInProcessResult) -> dict[str, VideoResult]:
    """Each node's video, from the run's asset materializations."""
    results: dict[str, VideoResult] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        results[str(metadata["node_id"].value)] = VideoResult.from_wire(metadata["result"].value)  # type: ignore[arg-type]
    return results
