"""execute_plan as a node pool: `plan` -> `node[<id>]` per node to run -> `finish`, on both executors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.executions import admit, execution_status
from video_pipelines.nodes.tasks import planned_nodes
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import parse_plan

from ..conftest import MediaServer
from .conftest import FORKSERVER
from .harness import node_results, run_plan_in_process


def gen(node_id: str, **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "generateVideo",
        "params": {"prompt": node_id, "duration": 1, "resolution": 64, **params},
    }


def reframe(node_id: str, dep: str, ratio: str = "1:1") -> dict[str, Any]:
    return {"id": node_id, "type": "reframe", "params": {"aspectRatio": ratio}, "dependsOn": [dep]}


DIAMOND: dict[str, Any] = {
    "jobs": [
        gen("top"),
        reframe("left", "top", "1:1"),
        reframe("right", "top", "9:16"),
        {"id": "bottom", "type": "merge", "params": {}, "dependsOn": ["left", "right"]},
    ],
    "cache": False,
}


def entries(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    return list(instance.all_logs(run_id))


def step_keys(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's steps in the order they started."""
    return [
        str(entry.step_key)
        for entry in entries(instance, run_id)
        if entry.dagster_event is not None and entry.dagster_event.event_type_value == "STEP_START"
    ]


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in entries(instance, run_id) if entry.dagster_event is None]


def materialized_in_order(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    kind = dg.DagsterEventType.ASSET_MATERIALIZATION
    records = instance.get_records_for_run(run_id, of_type=kind).records
    return [str(r.event_log_entry.asset_materialization.metadata["node_id"].value) for r in records]  # type: ignore[union-attr]


def multiprocess(plan: dict[str, Any], instance: dg.DagsterInstance, max_concurrent: int) -> dg.ExecutionResult:
    """The run of `plan` on the multiprocess executor, each step its own process (`forkserver`)."""
    config = {"max_concurrent": max_concurrent, **FORKSERVER}
    run_config = dg.RunConfig(
        ops={"plan": PlanConfig.from_plan(parse_plan(plan))}, execution={"config": {"multiprocess": config}}
    )
    return dg.execute_job(
        dg.reconstructable(execute_plan_job), instance=instance, run_config=run_config.to_config_dict()
    )


def test_nodes_are_handed_out_in_topological_order_local_first_within_a_depth() -> None:
    plan = {
        "jobs": [
            gen("remote", provider="replicate"),
            reframe("after_remote", "remote"),
            gen("local"),
            {"id": "end", "type": "merge", "params": {}, "dependsOn": ["after_remote", "local"]},
        ]
    }
    resolved = admit(plan).resolved
    assert resolved is not None
    planned = planned_nodes("exec", resolved)
    assert [p.node.id for p in planned] == ["local", "remote", "after_remote", "end"]
    end = planned[-1]
    assert end.needs == {node_id: resolved.lineage[node_id] for node_id in ("after_remote", "local", "remote")}
    assert end.known == {}


def test_a_run_page_lists_the_plans_nodes_and_nothing_else(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(DIAMOND, instance)
        assert result.success
        kinds = [e.dagster_event.event_type_value for e in entries(instance, result.run_id) if e.dagster_event]
        assert step_keys(instance, result.run_id) == [
            "plan",
            "node[top]",
            "node[left]",
            "node[right]",
            "node[bottom]",
            "finish",
        ]
        assert "STEP_SKIPPED" not in kinds and "STEP_UP_FOR_RETRY" not in kinds
        # Only the planned nodes cross the IO manager: written once by `plan`, read once by their node's step.
        assert kinds.count("HANDLED_OUTPUT") == kinds.count("LOADED_INPUT") == 4
        assert not [line for line in messages(instance, result.run_id) if "PickledObject" in line]
        assert any(
            line.startswith("execution ") and "completed: final video bottom" in line
            for line in messages(instance, result.run_id)
        )


@pytest.mark.parametrize("max_concurrent", [1, 2])
def test_a_diamond_runs_with_the_multiprocess_executor(
    dagster_home: Path, forkserver: None, max_concurrent: int
) -> None:
    """Each step its own process: a node waits for its inputs' records; FIFO in topological order cannot deadlock."""
    with dg.DagsterInstance.get() as instance:
        with multiprocess(DIAMOND, instance, max_concurrent) as result:
            assert result.success
            run_id = result.run_id
        order = materialized_in_order(instance, run_id)
        assert sorted(order) == ["bottom", "left", "right", "top"]
        assert order[0] == "top" and order[-1] == "bottom"
        status = execution_status(DagsterRunRecords(instance), None, run_id).to_wire()
        assert status["status"] == "completed"
        assert status["result"]["aspectRatio"] == "1:1"  # the merge takes its first input's frame


def voice_fails(media_server: MediaServer, last: dict[str, Any]) -> dict[str, Any]:
    """clip -> voice (lip sync to a missing audio file: fails) -> square, and `last`."""
    voice = {"id": "voice", "type": "lipSync", "params": {"audioUrl": media_server.url("missing.mp3")}}
    jobs = [gen("clip"), {**voice, "dependsOn": ["clip"]}, reframe("square", "voice"), last]
    return {"jobs": jobs, "cache": False}


def test_a_node_whose_input_failed_is_not_run_in_process(dagster_home: Path, media_server: MediaServer) -> None:
    plan = voice_fails(media_server, gen("other"))
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert not result.success
        assert set(node_results(result)) == {"clip", "other"}  # a node that does not need the failed one still runs
        assert "square: not run: voice failed" in messages(instance, result.run_id)
        assert "finish" not in step_keys(instance, result.run_id)
        failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures == ["node[voice]"]
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
        assert status["status"] == "failed" and status["error"].startswith("voice (lipSync) failed")


def test_a_node_whose_input_failed_is_not_run_multiprocess(
    dagster_home: Path, media_server: MediaServer, forkserver: None
) -> None:
    plan = voice_fails(media_server, reframe("round", "square"))
    with dg.DagsterInstance.get() as instance:
        with multiprocess(plan, instance, 2) as result:
            assert not result.success
            run_id = result.run_id
        lines = messages(instance, run_id)
        assert "square: not run: voice failed" in lines
        # round needs square and, through it, voice: it names the failure, whichever step ended first.
        assert "round: not run: voice failed" in lines
        assert materialized_in_order(instance, run_id) == ["clip"]


def test_a_plan_with_nothing_to_run_ends_in_finish(dagster_home: Path) -> None:
    plan = {"jobs": [gen("clip"), reframe("square", "clip")]}
    with dg.DagsterInstance.get() as instance:
        first = run_plan_in_process(plan, instance)
        again = run_plan_in_process(plan, instance)  # everything reused from the first execution
        assert first.success and again.success
        assert step_keys(instance, again.run_id) == ["plan", "finish"]
        kinds = [e.dagster_event.event_type_value for e in entries(instance, again.run_id) if e.dagster_event]
        assert "STEP_SKIPPED" not in kinds
        assert kinds.count("ASSET_MATERIALIZATION") == 2  # one per reused node, in its own right
        assert any("completed: final video square" in line for line in messages(instance, again.run_id))
