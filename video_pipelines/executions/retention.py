"""When an execution leaves the asset catalog (Dagster suggests at most 100,000 partitions per asset): once
every run of it ended before the cutoff. Only the catalog's entries go; a recent `exec_<ULID>` costs no query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from video_pipelines.executions.records import RunView
from video_pipelines.submissions import execution_created_at


def began_after(execution_id: str, cutoff: float) -> bool:
    """True when the execution's id says it was created after `cutoff`: it cannot have ended before it."""
    created = execution_created_at(execution_id)
    return created is not None and created >= cutoff


def ended_before(execution_id: str, runs: Sequence[RunView], cutoff: float) -> bool:
    """True when every run ended before `cutoff` (with no run left: when it was created); an unknown end keeps it."""
    if began_after(execution_id, cutoff):
        return False
    if any(not run.state.is_finished or run.ended_at is None for run in runs):
        return False
    ended = [run.ended_at for run in runs if run.ended_at is not None]
    last_ended = max(ended, default=execution_created_at(execution_id) or 0.0)
    return last_ended < cutoff


def describe_cutoff(cutoff: float) -> str:
    return datetime.fromtimestamp(cutoff, UTC).isoformat(timespec="seconds")
