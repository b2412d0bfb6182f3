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
most 100,000 partitions per asset: past that, deleting old executions' partitions
(`instance.delete_dynamic_partition`) keeps the catalog fast.

The specs have no function: the catalog shows them as external assets, whose Materialize button
it disables ("Asset does not have a definition"); only `execute_plan` runs write them.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

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


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description
        + " Written by execute_plan runs, never materialized from here: one partition per node result,"
        " named <execution id>:<node id> (search the execution id), holding its video and metadata.",
        group_name="video_pipelines",
        kinds={"video"},
        partitions_def=dg.DynamicPartitionsDefinition(name=partitions_of(operation)),
    )
    for operation, description in _DESCRIPTIONS.items()
]
