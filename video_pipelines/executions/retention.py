"""When an execution is old enough to leave the asset catalog.

The catalog keeps one partition per node result (`orchestration/catalog/assets.py`), and Dagster
suggests at most 100,000 partitions per asset; a busy deployment passes that in months. An
execution leaves the catalog once every run of it ended before the retention's cutoff: its
videos, its status, its webhooks and its results for reuse stay; only the catalog's entries go.

An execution still running, or ended after the cutoff (a base resumed or retried last week),
stays. An `exec_<ULID>` id says when the execution was created, and an execution cannot end
before it began: one created after the cutoff is kept without reading its runs, so a pass over
a catalog of recent executions costs no query per execution.
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
    """True when every run of the execution (`runs`) ended before `cutoff` (epoch seconds).

    An execution with no run left (deleted from the UI) counts as ended when it was created,
    or long ago if its id does not say; a run with no end time known keeps it.
    """
    if began_after(execution_id, cutoff):
        return False
    if any(not run.state.is_finished or run.ended_at is None for run in runs):
        return False
    ended = [run.ended_at for run in runs if run.ended_at is not None]
    last_ended = max(ended, default=execution_created_at(execution_id) or 0.0)
    return last_ended < cutoff


def describe_cutoff(cutoff: float) -> str:
    """The cutoff as people read it (UTC, to the second)."""
    return datetime.fromtimestamp(cutoff, UTC).isoformat(timespec="seconds")
