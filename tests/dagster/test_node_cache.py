"""`execute_plan` on a real instance: two unrelated executions, one computation."""

from __future__ import annotations

from typing import Any

import dagster as dg

from video_pipelines.executions import execution_status
from video_pipelines.orchestration.run_records import DagsterRunRecords

from .harness import run_plan_in_process


def _steps(result: Any) -> set[str]:
    return {event.step_key for event in result.all_events if event.is_step_success}


def test_an_unrelated_execution_reuses_by_lineage_and_cache_false_forces_a_run(dagster_home: Any) -> None:
    plan = {
        "jobs": [
            {"id": "clip", "type": "generateVideo", "params": {"prompt": "shared", "duration": 1, "resolution": 64}},
            {"id": "wide", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["clip"]},
        ]
    }
    # The other execution names its nodes differently: reuse is by lineage, not by id.
    renamed = {
        "jobs": [
            {**plan["jobs"][0], "id": "opening"},
            {"id": "tall", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["opening"]},
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["opening"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        records = DagsterRunRecords(instance)
        first = run_plan_in_process(plan, instance)
        second = run_plan_in_process(renamed, instance)
        assert first.success and second.success
        assert _steps(second) >= {"node[square]"} and not _steps(second) & {"node[opening]", "node[tall]"}
        status = execution_status(records, None, second.run_id).to_wire()
        assert status["status"] == "completed" and status["reusedJobs"] == 2
        assert {node: job["reusedFrom"] for node, job in status["jobs"].items()} == {
            "opening": first.run_id,
            "tall": first.run_id,
            "square": None,
        }
        assert (
            status["jobs"]["tall"]["result"]
            == execution_status(records, None, first.run_id).to_wire()["jobs"]["wide"]["result"]
        )

        fresh = run_plan_in_process(
            {**renamed, "jobs": [{**renamed["jobs"][0], "cache": False}, *renamed["jobs"][1:]]}, instance
        )
        assert fresh.success and "node[opening]" in _steps(fresh)
        fresh_status = execution_status(records, None, fresh.run_id).to_wire()
        assert fresh_status["jobs"]["opening"]["status"] == "completed"
        # Its clip renders as before (same lineage, same seed), so the downstream nodes that cache still match.
        assert fresh_status["jobs"]["square"]["reusedFrom"] == second.run_id
