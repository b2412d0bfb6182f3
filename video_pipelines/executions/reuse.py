"""Where reuse is decided at admission, once for every door (the `plan` op, `validate`, the API).

In order: the plan's base (`admit` resolved it), then what earlier runs of this execution
completed (a resume, a retry or a re-execution: `attempts.carry_completed`), then what earlier
executions of the tenant made (`nodes.cache.reuse_cached`), then what storage has lost since
(expired, deleted) is made again (`plan.reuse.run_where_gone`). Storage is asked only when
something is reused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from video_pipelines.executions.attempts import carry_completed
from video_pipelines.executions.records import NodeRecord
from video_pipelines.nodes.cache import reuse_cached
from video_pipelines.nodes.environment import still_stored
from video_pipelines.nodes.head_start import Log
from video_pipelines.plan.reuse import ResolvedPlan, run_where_gone
from video_pipelines.storage import ArtifactStore
from video_pipelines.submissions import NodeResultIndex


def decide_reuse(
    resolved: ResolvedPlan,
    index: NodeResultIndex,
    *,
    tenant: str,
    execution_id: str,
    artifacts: Callable[[], ArtifactStore],
    warn: Log,
    earlier: Mapping[str, NodeRecord] | None = None,
) -> ResolvedPlan:
    """`resolved` (its base's nodes taken) with what `earlier` runs of the execution, earlier executions of
    `tenant` and the storage at `artifacts()` decide; `warn` hears when storage cannot say."""
    if earlier:
        resolved = carry_completed(resolved, earlier)
    resolved = reuse_cached(resolved, index, tenant, execution_id)
    if resolved.reused:
        resolved = run_where_gone(resolved, still_stored(artifacts(), warn))
    return resolved
