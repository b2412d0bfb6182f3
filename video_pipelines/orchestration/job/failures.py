"""How a step of `execute_plan` fails: our message first in the UI, what to do beside it, no chained trace.

The UI shows a step failure as its exception's first line, the `Failure`'s metadata, then the traces. A
`dg.Failure`'s first line reads `dagster._core.definitions.events.Failure: ...`, and raised `from` the node's
error it adds that error's trace (our internals, ~30 lines) under the message. So: `StepFailed`, raised
`from None`, with the node's error in the message and its trace in the run's debug log. Dagster's own frames
(where it caught the failure) stay below: 1.13 offers no way to leave them out.
"""

from __future__ import annotations

import traceback

import dagster as dg

from video_pipelines.errors import TransientError
from video_pipelines.nodes.retries import NodeFailed
from video_pipelines.nodes.tasks import NodeTask


class StepFailed(dg.Failure):
    """A step that failed for a reason our message states; no retry of the step would fix it."""

    def __init__(self, description: str, what_to_do: str = "", **metadata: str) -> None:
        if what_to_do:
            metadata["what to do"] = what_to_do
        super().__init__(description=description, metadata=metadata, allow_retries=False)


# Python names an exception of `builtins` without its module: the UI's first line reads "StepFailed: <message>".
StepFailed.__module__ = "builtins"


def node_failure(log: dg.DagsterLogManager, task: NodeTask, failed: NodeFailed) -> StepFailed:
    """The step failure of a node that failed for good; its error's trace goes to the run's debug log."""
    cause = failed.__cause__
    if cause is not None:
        log.debug(f"{task.node.id}: trace of its error:\n" + "".join(traceback.format_exception(cause)))
    if cause is None:  # stopped because the run is ending (another node failed, or a cancel)
        what_to_do = "nothing here: see the node whose failure ended the run"
    elif isinstance(cause, TransientError):
        what_to_do = f"try again later: `video-pipelines retry {task.execution_id}` reuses the nodes that completed"
    else:
        what_to_do = (
            f"fix what the message names in node {task.node.id}, then submit the plan again "
            "(completed nodes are reused)"
        )
    return StepFailed(
        str(failed),
        what_to_do,
        node_id=task.node.id,
        operation=task.node.operation.value,
        execution_id=task.execution_id,
    )
