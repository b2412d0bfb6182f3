"""The catalog's video assets: each node result is a partition, `<execution id>:<node id>`, of its kind's asset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from video_pipelines.executions import EXECUTION_ID_TAG
from video_pipelines.executions.status import execution_status
from video_pipelines.orchestration.catalog.assets import VIDEO_ASSET_SPECS, partition_key, partitions_of
from video_pipelines.orchestration.definitions import defs, execute_plan_job
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import Operation, parse_plan
from video_pipelines.vocabulary import ExecutionState

from .harness import run_plan_in_process

REPO = Path(__file__).resolve().parents[2]
EXECUTION_ID = "exec_01JEXAMPLE0000000000000000"

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "scene-1", "type": "generateVideo", "params": {"prompt": "one", "duration": 1, "resolution": 90}},
        {"id": "scene-2", "type": "generateVideo", "params": {"prompt": "two", "duration": 1, "resolution": 90}},
        {"id": "both", "type": "merge", "dependsOn": ["scene-1", "scene-2"]},
    ]
}


def node_ids_in(instance: dg.DagsterInstance, operation: Operation, partition: str) -> list[str]:
    """The node ids recorded in `partition` of `operation`'s asset, oldest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["video", operation.snake_name]), asset_partitions=[partition]),
        limit=10,
        ascending=True,
    ).records
    materializations = [record.asset_materialization for record in records]
    return [str(m.metadata["node_id"].value) for m in materializations if m is not None]


def test_video_assets_cannot_be_materialized_from_the_catalog() -> None:
    graph = defs.get_repository_def().asset_graph
    for spec in VIDEO_ASSET_SPECS:
        node = graph.get(spec.key)
        assert node.is_external and not node.is_executable and not node.is_materializable
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert "never materialized from here" in (node.description or "")
        # The UI renders descriptions as Markdown: `<execution id>` would be an HTML tag, and vanish.
        assert "<" not in (node.description or "")
    assert len({spec.partitions_def for spec in VIDEO_ASSET_SPECS}) == len(VIDEO_ASSET_SPECS)


ASSET_NODE = """
query ($key: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      isExecutable
      isMaterializable
      partitionKeysByDimension { partitionKeys }
      assetMaterializations(partitions: [$partition]) { partition description }
    }
  }
}
"""


ASSET_CHECKS = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      isPartitioned
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            blocking
            canExecuteIndividually
            partitionDefinition { type }
            executionForLatestMaterialization { status partition evaluation { severity description } }
          }
        }
      }
    }
  }
}
"""


def test_the_ui_finds_the_executions_nodes_as_partitions_and_offers_no_materialize(dagster_home: Path) -> None:
    """What the UI asks the webserver: whether to offer Materialize, the partitions, a partition's events."""
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(parse_plan(PLAN))})
    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(
            run_config=run_config, instance=instance, tags={EXECUTION_ID_TAG: EXECUTION_ID}
        )
        assert result.success
        with define_out_of_process_context(str(REPO / "definitions.py"), "defs", instance) as context:
            key = {"path": ["video", "generate_video"]}
            variables = {"key": key, "partition": partition_key(EXECUTION_ID, "scene-1")}
            node = execute_dagster_graphql(context, ASSET_NODE, variables).data["assetNodeOrError"]
            merge = {"key": {"path": ["video", "merge"]}}
            checked = execute_dagster_graphql(context, ASSET_CHECKS, merge).data["assetNodeOrError"]
    assert not node["isExecutable"] and not node["isMaterializable"]
    # The asset's Checks tab: the five media checks, the node's evaluations, and no Execute button
    # (the UI disables it for checks that require a materialization, and for partitioned assets).
    checks = {check["name"]: check for check in checked["assetChecksOrError"]["checks"]}
    assert set(checks) == {"streams", "duration", "aspect_ratio", "not_black", "not_silent"}
    assert checked["isPartitioned"] and {check["blocking"] for check in checks.values()} == {True, False}
    for check in checks.values():
        assert check["canExecuteIndividually"] == "REQUIRES_MATERIALIZATION"
        assert check["partitionDefinition"] == {"type": "DYNAMIC"}
        execution = check["executionForLatestMaterialization"]
        assert (execution["status"], execution["partition"]) == ("SUCCEEDED", f"{EXECUTION_ID}:both")
    assert checks["duration"]["executionForLatestMaterialization"]["evaluation"]["description"].startswith(
        "duration: both (merge) lasts"
    )
    assert node["partitionKeysByDimension"] == [
        {"partitionKeys": [f"{EXECUTION_ID}:scene-1", f"{EXECUTION_ID}:scene-2"]}
    ]
    [event] = node["assetMaterializations"]
    assert event["description"] == f"scene-1 of execution {EXECUTION_ID}"


def test_each_node_is_recorded_in_its_own_partition(dagster_home: Path) -> None:
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(parse_plan(PLAN))})
    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(
            run_config=run_config, instance=instance, tags={EXECUTION_ID_TAG: EXECUTION_ID}
        )
        assert result.success
        scenes = [partition_key(EXECUTION_ID, "scene-1"), partition_key(EXECUTION_ID, "scene-2")]
        both = partition_key(EXECUTION_ID, "both")
        assert instance.get_dynamic_partitions(partitions_of(Operation.GENERATE_VIDEO)) == scenes
        assert instance.get_dynamic_partitions(partitions_of(Operation.MERGE)) == [both]
        assert instance.get_dynamic_partitions(partitions_of(Operation.REFRAME)) == []  # the plan has none
        assert node_ids_in(instance, Operation.GENERATE_VIDEO, scenes[0]) == ["scene-1"]
        assert node_ids_in(instance, Operation.GENERATE_VIDEO, scenes[1]) == ["scene-2"]
        assert node_ids_in(instance, Operation.MERGE, both) == ["both"]
        # What status and variants read (a run's materializations) is unchanged.
        records = DagsterRunRecords(instance)
        assert set(records.node_records(result.run_id)) == {"scene-1", "scene-2", "both"}
        status = execution_status(records, None, EXECUTION_ID)
        assert status.state is ExecutionState.COMPLETED and status.result is not None
        # Another run of the execution (a re-execution) adds no partition: it records what it carries in the same.
        again = execute_plan_job().execute_in_process(
            run_config=run_config, instance=instance, tags={EXECUTION_ID_TAG: EXECUTION_ID}
        )
        assert again.success
        assert instance.get_dynamic_partitions(partitions_of(Operation.MERGE)) == [both]
        assert node_ids_in(instance, Operation.MERGE, both) == ["both", "both"]
        assert records.node_records(again.run_id)["both"].run_id == again.run_id


def test_a_variants_reused_nodes_are_partitions_of_the_variant(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        base = run_plan_in_process(PLAN, instance)
        variant_plan = {
            "baseExecutionId": base.run_id,
            "jobs": [
                *PLAN["jobs"],
                {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["both"]},
            ],
        }
        variant = run_plan_in_process(variant_plan, instance)
        assert base.success and variant.success
        # A direct launch's execution id is its run id.
        base_both, variant_both = partition_key(base.run_id, "both"), partition_key(variant.run_id, "both")
        assert set(instance.get_dynamic_partitions(partitions_of(Operation.MERGE))) == {base_both, variant_both}
        square = partition_key(variant.run_id, "square")
        assert instance.get_dynamic_partitions(partitions_of(Operation.REFRAME)) == [square]
        assert node_ids_in(instance, Operation.MERGE, variant_both) == ["both"]  # reused: recorded by `plan`
        assert node_ids_in(instance, Operation.REFRAME, square) == ["square"]
        assert node_ids_in(instance, Operation.MERGE, base_both) == ["both"]  # the base's record stays its own
        reused = DagsterRunRecords(instance).node_records(variant.run_id)
        assert reused["both"].reused_from == base.run_id
