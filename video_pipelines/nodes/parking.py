"""A node that parks: its provider job runs on, recorded where a webhook or the poller finds it, and its run ends."""

from __future__ import annotations

import threading

from video_pipelines.nodes.ledger import PARKED_TAG_PREFIX, RunTags, write_tag
from video_pipelines.nodes.tasks import NodeTask
from video_pipelines.providers.http import Parked
from video_pipelines.submissions import ProviderWait, ProviderWaits, SubmissionStore
from video_pipelines.submissions.waits import poll_seconds


def park(
    tags: RunTags, store: SubmissionStore, run_id: str, task: NodeTask, parked: Parked, lock: threading.Lock
) -> ProviderWait:
    """Record the wait, then tag the run (the UI's "parked" and the status's `waiting` read the tag)."""
    wait = ProviderWaits(store).park(
        parked.provider,
        parked.job_id,
        execution_id=task.execution_id,
        node_id=task.node.id,
        run_id=run_id,
        check_in=poll_seconds(parked.provider),
    )
    write_tag(tags, run_id, PARKED_TAG_PREFIX + task.node.id, parked.shown, lock)
    return wait
