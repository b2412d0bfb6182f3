"""Retention of the asset catalog: old executions' partitions go, their videos, status and reuse stay."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from ulid import ULID

from video_pipelines.doors import client
from video_pipelines.doors.cli import main
from video_pipelines.executions import RunView
from video_pipelines.executions.records import RunState
from video_pipelines.executions.retention import began_after, ended_before
from video_pipelines.orchestration.catalog.assets import add_node_partitions, partition_key, partitions_of
from video_pipelines.orchestration.catalog.retention import (
    CATALOG_RETENTION_ENV,
    catalog_retention,
    prune_catalog,
)
from video_pipelines.plan import Operation, parse_plan
from video_pipelines.submissions import execution_created_at, new_execution_id

from .harness import run_plan_in_process
from .test_variants import executed_nodes

DAY = 86_400.0
PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "clip", "type": "generateVideo", "params": {"prompt": "Scene", "duration": 1, "resolution": 90}},
        {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["clip"]},
    ]
}


def execution_id_made_at(epoch_seconds: float) -> str:
    return f"exec_{ULID.from_timestamp(epoch_seconds)}"


def run(state: RunState, ended_at: float | None) -> RunView:
    return RunView(run_id="r", execution_id="x", state=state, plan={}, ended_at=ended_at)


# --- the core: when an execution has ended before the cutoff ----------------------------------


def test_an_execution_created_after_the_cutoff_is_kept_whatever_its_runs_say() -> None:
    cutoff = time.time() - DAY
    assert began_after(execution_id_made_at(cutoff + 60), cutoff)
    assert not began_after(execution_id_made_at(cutoff - 60), cutoff)
    assert not began_after("0b6e1f3c-8a4e-4c59-9a6c-0d7a2f1e5b11", cutoff)
    assert not ended_before(execution_id_made_at(cutoff + 60), [], cutoff)


def test_an_old_execution_whose_runs_all_ended_before_the_cutoff_goes() -> None:
    cutoff = time.time() - DAY
    runs = [run(RunState.FAILURE, cutoff - 500), run(RunState.SUCCESS, cutoff - 100)]
    assert ended_before(execution_id_made_at(cutoff - 1000), runs, cutoff)


@pytest.mark.parametrize(
    "runs",
    [
        [run(RunState.SUCCESS, 100.0), run(RunState.STARTED, None)],  # a resume still running
        [run(RunState.FAILURE, 100.0), run(RunState.SUCCESS, 2 * DAY)],  # retried after the cutoff
        [run(RunState.QUEUED, None)],
        [run(RunState.CANCELED, None)],  # ended, but when is not known
    ],
    ids=["running", "retried-later", "queued", "end-unknown"],
)
def test_an_old_execution_still_running_or_ended_after_the_cutoff_stays(runs: list[RunView]) -> None:
    assert not ended_before(execution_id_made_at(50.0), runs, DAY)


def test_an_execution_with_no_run_left_counts_as_ended_when_it_was_created() -> None:
    cutoff = time.time() - DAY
    assert ended_before(execution_id_made_at(cutoff - 10), [], cutoff)
    # A run's own id says nothing of its age: with no run left it goes.
    assert ended_before("0b6e1f3c-8a4e-4c59-9a6c-0d7a2f1e5b11", [], cutoff)


def test_an_execution_id_says_when_it_was_made() -> None:
    before = time.time()
    made = execution_created_at(new_execution_id())
    assert made is not None and before - 0.002 <= made <= time.time()
    assert execution_created_at(execution_id_made_at(1_700_000_000.0)) == pytest.approx(1_700_000_000.0)
    assert execution_created_at("0b6e1f3c-8a4e-4c59-9a6c-0d7a2f1e5b11") is None
    assert execution_created_at("exec_not-a-ulid") is None


# --- the pass over a real instance ------------------------------------------------------------


def partition_keys(instance: dg.DagsterInstance) -> set[str]:
    return {key for operation in Operation for key in instance.get_dynamic_partitions(partitions_of(operation))}


def test_a_pass_deletes_the_partitions_of_old_executions_and_keeps_the_rest(dagster_home: Path) -> None:
    with client.deployment(create=False) as target:
        instance = target.instance
        old = run_plan_in_process(PLAN, instance)
        recent = run_plan_in_process(PLAN, instance)
        assert old.success and recent.success
        old_end = instance.get_run_record_by_id(old.run_id).end_time  # type: ignore[union-attr]
        recent_end = instance.get_run_record_by_id(recent.run_id).end_time  # type: ignore[union-attr]
        assert old_end is not None and recent_end is not None and old_end < recent_end
        before = partition_keys(instance)
        assert {partition_key(old.run_id, "clip"), partition_key(recent.run_id, "square")} <= before
        # Thirty days from now, the cutoff falls between the two runs' ends.
        now = (old_end + recent_end) / 2 + 30 * DAY

        dry = prune_catalog(instance, timedelta(days=30), now=now, dry_run=True)
        assert dry.pruned == [old.run_id] and dry.partitions_deleted == 2 and dry.kept == 1
        assert partition_keys(instance) == before, "a dry run deleted partitions"

        report = prune_catalog(instance, timedelta(days=30), now=now)
        assert report.pruned == [old.run_id] and report.partitions_deleted == 2 and report.complete
        assert partition_keys(instance) == before - {partition_key(old.run_id, n) for n in ("clip", "square")}
        assert "deleted 2 partition(s) of 1 execution(s)" in report.summary()

        # Its status, videos and materializations stay.
        status = client.status(old.run_id, target=target)
        assert status["status"] == "completed" and status["jobs"]["square"]["result"]["url"]
        assert Path(status["jobs"]["square"]["result"]["url"].removeprefix("file://")).exists()
        materialized = instance.fetch_materializations(dg.AssetKey(["video", "reframe"]), limit=10).records
        assert {record.partition_key for record in materialized} >= {partition_key(old.run_id, "square")}

        # A second pass finds nothing more to delete.
        again = prune_catalog(instance, timedelta(days=30), now=now)
        assert again.pruned == [] and again.kept == 1


def test_a_variant_of_a_pruned_base_still_reuses_its_results(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(PLAN, instance)
        report = prune_catalog(instance, timedelta(days=1), now=time.time() + 2 * DAY)
        assert report.pruned == [base.run_id]
        variant = run_plan_in_process({**PLAN, "baseExecutionId": base.run_id}, instance)
        assert variant.success and executed_nodes(variant) == set(), "the variant ran what its base had made"
        # The variant's run records its reused nodes, so the catalog lists them again under its own id.
        assert partition_key(variant.run_id, "square") in partition_keys(instance)


def test_executions_with_no_run_left_go_oldest_first_within_the_time_budget(dagster_home: Path) -> None:
    nodes = parse_plan(PLAN).nodes
    now = time.time()
    made = [execution_id_made_at(now - (40 - day) * DAY) for day in range(3)]  # 40, 39 and 38 days old
    with dg.DagsterInstance.get() as instance:
        for execution_id in reversed(made):
            add_node_partitions(instance, execution_id, nodes)
        recent = execution_id_made_at(now - 60)
        add_node_partitions(instance, recent, nodes)

        spent = prune_catalog(instance, timedelta(days=30), now=now, budget_seconds=0)
        assert not spent.complete and spent.pruned == [] and len(partition_keys(instance)) == 8

        report = prune_catalog(instance, timedelta(days=30), now=now)
        assert report.pruned == made, "not the oldest first"
        assert report.kept == 1 and partition_keys(instance) == {partition_key(recent, n) for n in ("clip", "square")}


# --- the sensor and the command -------------------------------------------------------------


def test_the_sensor_does_nothing_until_a_retention_is_set(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_RETENTION_ENV, raising=False)
    with dg.DagsterInstance.get() as instance:
        old = execution_id_made_at(time.time() - 10 * DAY)
        add_node_partitions(instance, old, parse_plan(PLAN).nodes)

        off = catalog_retention(dg.build_sensor_context(instance=instance))
        assert isinstance(off, dg.SkipReason) and f"{CATALOG_RETENTION_ENV} is not set" in (off.skip_message or "")
        assert len(partition_keys(instance)) == 2

        monkeypatch.setenv(CATALOG_RETENTION_ENV, "7")
        on = catalog_retention(dg.build_sensor_context(instance=instance))
        assert isinstance(on, dg.SkipReason) and "deleted 2 partition(s) of 1 execution(s)" in (on.skip_message or "")
        assert partition_keys(instance) == set()


def test_prune_catalog_command(dagster_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with dg.DagsterInstance.get() as instance:
        old = execution_id_made_at(time.time() - 3 * DAY)
        add_node_partitions(instance, old, parse_plan(PLAN).nodes)

    assert main(["prune-catalog", "--older-than-days", "2", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dryRun"] and dry["executions"] == [old] and dry["partitionsDeleted"] == 2

    assert main(["prune-catalog", "--older-than-days", "2"]) == 0
    captured = capsys.readouterr()
    done = json.loads(captured.out)
    assert not done["dryRun"] and done["executions"] == [old] and done["complete"]
    assert "deleted 2 partition(s) of 1 execution(s)" in captured.err
    with dg.DagsterInstance.get() as instance:
        assert partition_keys(instance) == set()


@pytest.mark.parametrize("days", ["0", "-3", "a week"])
def test_prune_catalog_refuses_a_retention_that_is_not_a_positive_number(
    dagster_home: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    assert main(["prune-catalog", "--older-than-days", days]) == 2
    assert "--older-than-days" in capsys.readouterr().err


def test_prune_catalog_makes_no_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "nowhere"))
    assert main(["prune-catalog", "--older-than-days", "30"]) == 2
    assert not (tmp_path / "nowhere").exists()
