"""Asset specs: one per operation kind, so the catalog explains what each video is.

Each execution is a partition of the assets its nodes make, keyed by its execution id: in an
asset's Partitions tab a person searches the id and opens that execution's video of that kind
(`/assets/video/<kind>?view=partitions&partition=<execution id>`); two nodes of one kind are two
events of that partition, each described by its node id. Why by execution and not by
lineage: the execution id is what a person holds (`submit`, `status`, a webhook); a lineage hash
is found only once the video is. Why one partition set per operation kind rather than one for
all five: an asset then lists only the executions with a node of its kind, so a missing
partition means a node that did not finish (failed, canceled), never "that plan had no merge".

Dynamic partitions, because executions are not known when the code loads: the `plan` step adds
the execution id to the partition set of each kind its plan has, before any node runs (adding is
idempotent: a resumed or re-executed run adds nothing). The ids we mint (`exec_<ULID>`, a run's
uuid) are valid keys; Dagster's instance refuses none (measured on 1.13), so an id set by hand
on a launched run never fails it. Dagster suggests at most 100,000 partitions per asset: past
that, deleting old executions' partitions (`instance.delete_dynamic_partition`) keeps it fast.

The specs have no function: the catalog shows them as external assets, which it cannot
materialize (no Materialize button); only `execute_plan` runs write them.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from video_pipelines.plan import Operation

_DESCRIPTIONS = {
    Operation.GENERATE_VIDEO: "Clips generated from a prompt (local FFmpeg render or an AI provider).",
    Operation.MERGE: "Videos merged from several inputs with cuts, crossfades or fades.",
    Operation.LIP_SYNC: "Videos whose audio track was replaced by, and lip-synced to, a new voice track.",
    Operation.ADD_SUBTITLES: "Videos with subtitles burned in.",
    Operation.REFRAME: "Videos reframed to another aspect ratio (crop, pad or blurred background).",
}


def asset_key_for(operation: Operation) -> dg.AssetKey:
    return dg.AssetKey(["video", operation.snake_name])


def executions_of(operation: Operation) -> str:
    """The name of the partition set of `operation`'s asset: the executions with a node of that kind."""
    return f"video_{operation.snake_name}_executions"


def add_execution(instance: dg.DagsterInstance, execution_id: str, operations: Iterable[Operation]) -> None:
    """Make `execution_id` a partition of the assets of `operations` (those its plan has); idempotent."""
    for operation in sorted(set(operations), key=lambda op: op.snake_name):
        instance.add_dynamic_partitions(executions_of(operation), [execution_id])


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description
        + " Written by execute_plan runs, never materialized from here: one partition per execution"
        " (its id), whose events are its nodes of this kind: each one's video and metadata.",
        group_name="video_pipelines",
        kinds={"video"},
        partitions_def=dg.DynamicPartitionsDefinition(name=executions_of(operation)),
    )
    for operation, description in _DESCRIPTIONS.items()
]
