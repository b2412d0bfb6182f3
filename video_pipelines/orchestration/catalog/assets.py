"""Asset specs: one per operation kind; each node result is a partition keyed `execution id:node id`.

Why a partition per node: keyed by execution alone, an execution's two clips would be one partition and
the UI shows only the latest (Dagster 1.13). The execution id, not the lineage, is what a person holds.
A partition is added as its node's result is materialized, never before: a failed node's partition would
count as missing ("57% filled"); the failure is on the run page. `catalog_retention` prunes old ones (Dagster
suggests at most 100,000). The specs have no function, so only `execute_plan`
writes them. Check specs attach only to an executable definition, hence one non-subsettable
`@multi_asset_check` whose op fails if launched on its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import dagster as dg

from video_pipelines.operations.checks import DEFAULT_BLOCKING, CheckName, CheckOutcome
from video_pipelines.plan import Operation, PlanNode

_DESCRIPTIONS = {
    Operation.GENERATE_VIDEO: "Clips generated from a prompt (local FFmpeg render or an AI provider).",
    Operation.MERGE: "Videos merged from several inputs with cuts, crossfades or fades.",
    Operation.LIP_SYNC: "Videos whose audio track was replaced by, and lip-synced to, a new voice track.",
    Operation.ADD_SUBTITLES: "Videos with subtitles burned in.",
    Operation.REFRAME: "Videos reframed to another aspect ratio (crop, pad or blurred background).",
}


def asset_key_for(operation: Operation) -> dg.AssetKey:
    return dg.AssetKey(["video", operation.snake_name])


def partitions_of(operation: Operation) -> str:
    return f"video_{operation.snake_name}_node_results"


def partition_key(execution_id: str, node_id: str) -> str:
    """One node result's partition: the execution id first, so searching it finds the execution's nodes."""
    return f"{execution_id}:{node_id}"


def add_node_partitions(instance: dg.DagsterInstance, execution_id: str, nodes: Iterable[PlanNode]) -> None:
    """The partitions of node results about to be materialized (idempotent: the instance skips existing keys)."""
    keys: dict[Operation, list[str]] = {}
    for node in nodes:
        keys.setdefault(node.operation, []).append(partition_key(execution_id, node.id))
    for operation, operation_keys in keys.items():
        instance.add_dynamic_partitions(partitions_of(operation), operation_keys)


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description
        + " Written by execute_plan runs, never materialized from here: one partition per node result, keyed"
        " `execution id:node id` (search the execution id), holding its video and metadata. Failed nodes have"
        " none: their failure is on their run's page.",
        group_name="video_pipelines",
        kinds={"video"},
        partitions_def=dg.DynamicPartitionsDefinition(name=partitions_of(operation)),
    )
    for operation, description in _DESCRIPTIONS.items()
]


def media_check_specs(blocking: Iterable[CheckName] = DEFAULT_BLOCKING) -> list[dg.AssetCheckSpec]:
    blocks = frozenset(blocking)
    with warnings.catch_warnings():
        # A check's partitions_def is a preview feature of Dagster 1.13; it is what shows each node's own result.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name.value,
                asset=asset_key_for(operation),
                description=name.description + " Evaluated by execute_plan on each node it runs.",
                blocking=name in blocks,
                partitions_def=dg.DynamicPartitionsDefinition(name=partitions_of(operation)),
            )
            for operation in _DESCRIPTIONS
            for name in CheckName
        ]


def media_checks(blocking: Iterable[CheckName] = DEFAULT_BLOCKING) -> dg.AssetChecksDefinition:

    @dg.multi_asset_check(specs=media_check_specs(blocking), can_subset=False, name="video_media_checks")
    def video_media_checks() -> dg.AssetCheckResult:
        """Media checks run inside execute_plan, on each node it runs: re-run the execution to check again."""
        raise dg.Failure(
            description="media checks run inside execute_plan on each node's video, not on their own: "
            "run the execution again (video-pipelines submit / execute_plan) to check its nodes again",
            allow_retries=False,
        )

    return video_media_checks


def check_evaluation(
    operation: Operation, execution_id: str, node_id: str, outcome: CheckOutcome
) -> dg.AssetCheckEvaluation:
    """A node's media check as its asset check evaluation (a non-blocking failure is a WARN)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key_for(operation),
        check_name=outcome.name.value,
        passed=outcome.passed,
        partition=partition_key(execution_id, node_id),
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        blocking=outcome.blocking,
        description=outcome.message,
        metadata={"node_id": node_id, "execution_id": execution_id, **outcome.metadata},
    )
