"""Asset specs: one per operation kind, so the catalog explains what each video is.

Each node result is a partition of its kind's asset, keyed `<execution id>:<node id>`: in the
asset's Partitions tab a person types the execution id in the search box, sees that execution's
nodes of that kind, and clicks one for its video and metadata; or goes straight there with
`/assets/video/<kind>?view=partitions&partition=<execution id>:<node id>`.

Why a partition per node result: one partition is one video. Keyed by the execution id alone,
an execution's two clips would be two materializations of one partition, and the catalog shows
a partition's latest materialization as its value and the others only in a history listed by
partition key; so the first clip would look replaced by the second (seen in the UI of Dagster 1.13).
Why the execution id in the key rather than the lineage hash: the execution id is what a person
holds (`submit`, `status`, a webhook); a lineage hash is found only once the video is. Another
run of the execution (a resume, a re-execution) records the same node under the same key again.
Why a partition set per operation kind rather than one for all five: an asset lists only its
kind's nodes, so a missing partition is a node that did not finish (failed, canceled).

Dynamic partitions, because executions are not known when the code loads: the `plan` step adds
the keys of its plan's nodes before any node runs (adding is idempotent). Dagster's instance
refuses no key (measured on 1.13), so an unusual node id never fails a run. Dagster suggests at
most 100,000 partitions per asset: the `catalog_retention` sensor and `video-pipelines
prune-catalog` delete the partitions of old executions (`catalog_retention.py`).

The specs have no function: the catalog shows them as external assets, whose Materialize button
it disables ("Asset does not have a definition"); only `execute_plan` runs write them.

Media checks (`operations.checks`): each asset declares the five checks (streams, duration,
aspect_ratio, not_black, not_silent), partitioned as the asset, so its *Checks* tab lists them
and each node result (partition) shows its own evaluations. `execute_plan` evaluates them on
every node it runs and logs `AssetCheckEvaluation`s with the node's partition. Dagster attaches
check specs only to an executable definition, so they belong to one `@multi_asset_check` that
cannot be subset: the UI then offers no *Execute* for a check on its own ("This check cannot
execute without materializing the asset"), nor for a partitioned asset's checks; launched anyway
(GraphQL), its op fails and says where checks run.
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
    """The name of the partition set of `operation`'s asset: the node results of that kind."""
    return f"video_{operation.snake_name}_node_results"


def partition_key(execution_id: str, node_id: str) -> str:
    """The partition of one node result: the execution id first, so searching it finds the execution's nodes."""
    return f"{execution_id}:{node_id}"


def add_execution(instance: dg.DagsterInstance, execution_id: str, nodes: Iterable[PlanNode]) -> None:
    """Make each of `nodes` a partition of its kind's asset, under `execution_id`; idempotent."""
    keys: dict[Operation, list[str]] = {}
    for node in nodes:
        keys.setdefault(node.operation, []).append(partition_key(execution_id, node.id))
    for operation, operation_keys in keys.items():
        instance.add_dynamic_partitions(partitions_of(operation), operation_keys)


def _partitions_def(operation: Operation) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=partitions_of(operation))


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description
        + " Written by execute_plan runs, never materialized from here: one partition per node result,"
        " named <execution id>:<node id> (search the execution id), holding its video and metadata.",
        group_name="video_pipelines",
        kinds={"video"},
        partitions_def=_partitions_def(operation),
    )
    for operation, description in _DESCRIPTIONS.items()
]


def media_check_specs(blocking: Iterable[CheckName] = DEFAULT_BLOCKING) -> list[dg.AssetCheckSpec]:
    """The media checks of every video asset, `blocking` marked so (the UI shows it beside the check)."""
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
                partitions_def=_partitions_def(operation),
            )
            for operation in _DESCRIPTIONS
            for name in CheckName
        ]


def media_checks(blocking: Iterable[CheckName] = DEFAULT_BLOCKING) -> dg.AssetChecksDefinition:
    """The media checks as Dagster knows them: declared here, evaluated only inside execute_plan."""

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
    """A node's media check as the asset's check evaluation, on the node's partition.

    A failure that does not block is a WARN (the node still completes); one that blocks is an ERROR.
    """
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
