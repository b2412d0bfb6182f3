"""Where reuse is decided, once for every door: base, earlier runs, earlier executions, then what storage lost."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from video_pipelines.executions.attempts import carry_completed
from video_pipelines.executions.records import NodeRecord
from video_pipelines.nodes.cache import Log, reuse_cached
from video_pipelines.plan.reuse import ResolvedPlan, run_where_gone
from video_pipelines.submissions import NodeResultIndex

if TYPE_CHECKING:
    from video_pipelines.storage import ArtifactStore


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
    """`resolved` with what earlier runs, earlier executions and storage decide (storage asked only on reuse)."""
    if earlier:
        resolved = carry_completed(resolved, earlier)
    resolved = reuse_cached(resolved, index, tenant, execution_id)
    if resolved.reused:
        # Imported only on reuse: a node's environment loads the HTTP client and storage, which `validate` need not.
        from video_pipelines.nodes.environment import still_stored

        resolved = run_where_gone(resolved, still_stored(artifacts(), warn))
    return resolved
