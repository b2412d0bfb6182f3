"""A reused video storage no longer holds (a bucket's expiry rule, a clean-up) is made again where it is needed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dagster as dg

from video_pipelines.operations.ffmpeg import probe
from video_pipelines.plan import parse_plan
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import Action, NodeDecision, ResolvedPlan, resolve, run_where_gone

from ..media import local_path_of
from .harness import node_results, run_plan_in_process
from .test_variants import executed_nodes, fake_result

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "clip", "type": "generateVideo", "params": {"prompt": "Scene", "duration": 1, "resolution": 90}},
        {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["clip"]},
    ]
}


def all_reused_but(plan_wire: dict[str, Any], *running: str) -> ResolvedPlan:
    """`plan_wire` resolved with every node reused from exec_base (its video named after it), except `running`."""
    resolved = resolve(parse_plan(plan_wire))
    decisions = {
        node_id: decision
        if node_id in running
        else NodeDecision(node_id, Action.REUSE, "same", reused_from="exec_base", result=fake_result(node_id[0]))
        for node_id, decision in resolved.decisions.items()
    }
    return ResolvedPlan(resolved.plan, resolved.lineage, decisions)


def gone(*node_ids: str) -> Any:
    missing = {fake_result(node_id[0]).sha256 for node_id in node_ids}
    return lambda result: result.sha256 not in missing


CHAIN = {
    "jobs": [
        {"id": "a", "type": "generateVideo", "params": {"prompt": "a"}},
        {"id": "b", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a"]},
        {"id": "c", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["b"]},
        {"id": "d", "type": "addSubtitles", "params": {"text": "Hi"}, "dependsOn": ["c"]},
    ]
}


def actions(resolved: ResolvedPlan) -> dict[str, str]:
    return {node_id: decision.action.value for node_id, decision in resolved.decisions.items()}


def test_a_gone_input_of_a_node_that_runs_runs_again_and_needs_its_own_inputs() -> None:
    resolved = all_reused_but(CHAIN, "d")
    # c is gone and d needs it: c runs, so b is needed; b is stored. a is gone but nothing needs it now.
    after = run_where_gone(resolved, gone("c", "a"))
    assert actions(after) == {"a": "reuse", "b": "reuse", "c": "run", "d": "run"}
    assert after.decisions["c"].reason == (
        f"the video it would reuse from exec_base ({fake_result('c').sha256[:12]}) is no longer in storage: runs again"
    )
    # b gone too: b runs, so a is needed, and a is gone: everything runs.
    assert actions(run_where_gone(resolved, gone("c", "b", "a"))) == dict.fromkeys("abcd", "run")


def test_a_gone_final_video_runs_again_and_a_video_nothing_needs_is_left_alone() -> None:
    resolved = all_reused_but(CHAIN)
    assert actions(run_where_gone(resolved, gone("d"))) == {"a": "reuse", "b": "reuse", "c": "reuse", "d": "run"}
    untouched = run_where_gone(resolved, gone("a", "b"))
    assert untouched is resolved  # d is stored: nothing needs a or b, so nothing is made or paid for again


def test_everything_stored_changes_nothing() -> None:
    resolved = all_reused_but(CHAIN, "d")
    assert run_where_gone(resolved, lambda _result: True) is resolved


# --- the job, on real media in a local artifact store -------------------------------------------


def delete_video(result: VideoResult) -> None:
    path = local_path_of(result.url)
    assert path.is_file()
    path.unlink()


def test_a_variant_makes_again_what_storage_lost_and_reuses_the_rest(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(PLAN, instance)
        assert base.success
        made = node_results(base)
        delete_video(made["square"])
        variant_plan: dict[str, Any] = copy.deepcopy(PLAN)
        variant_plan["baseExecutionId"] = base.run_id
        variant_plan["jobs"].append(
            {"id": "subs", "type": "addSubtitles", "params": {"text": "Hi"}, "dependsOn": ["square"]}
        )
        variant = run_plan_in_process(variant_plan, instance)
        logs = [entry.user_message for entry in instance.all_logs(variant.run_id)]
    assert variant.success
    assert executed_nodes(variant) == {"square", "subs"}  # clip is still stored: reused
    again = node_results(variant)
    assert again["clip"].sha256 == made["clip"].sha256
    assert again["square"].sha256 == made["square"].sha256  # the same operation on the same input: the same video
    assert local_path_of(again["square"].url).is_file()
    assert probe(local_path_of(again["subs"].url)).duration > 0.5
    reason = f"square: run: the video it would reuse from {base.run_id} ({made['square'].sha256[:12]})"
    assert any(line.startswith(reason) and line.endswith("is no longer in storage: runs again") for line in logs), logs


def test_an_execution_reusing_a_lost_video_by_lineage_makes_it_again(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        first = run_plan_in_process(PLAN, instance)
        made = node_results(first)
        delete_video(made["clip"])  # nothing needs it while square is stored
        untouched = run_plan_in_process(PLAN, instance)
        delete_video(made["square"])  # now square runs again, and needs clip
        both = run_plan_in_process(PLAN, instance)
    assert first.success and untouched.success and both.success
    assert executed_nodes(untouched) == set()
    assert executed_nodes(both) == {"clip", "square"}
    assert all(local_path_of(result.url).is_file() for result in node_results(both).values())
