"""A node's run with its transient failures retried inside its step (backoff 2, 4, 8 s +-50%).

Not a dg.RetryPolicy: Dagster applies it to interrupts too, restarting a canceled step. Not
RetryRequested: it requeues the step behind the steps waiting for its video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from video_pipelines.errors import TransientError, VideoPipelineError
from video_pipelines.net.retrying import backoff_delay
from video_pipelines.nodes.checks import subject
from video_pipelines.nodes.head_start import HeadStarts, Log
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.nodes.tasks import NodeTask
from video_pipelines.nodes.work import RunNodes, RunShell, falls_back, first_choice, run_or_await
from video_pipelines.operations.checks import CheckOutcome, MediaChecksFailed
from video_pipelines.providers.http import Abandoned, sleep_interruptibly

MAX_RETRIES = 3
RETRY_BASE_DELAY_SECONDS = 2.0


class NodeFailed(Exception):
    """The node failed for good: its step fails with this message, not retried."""


def run_with_retries(
    nodes: RunNodes,
    shell: RunShell,
    started: HeadStarts | None,
    task: NodeTask,
    *,
    log: Log,
    warn: Log,
    log_checks: Callable[[Sequence[CheckOutcome]], None],
) -> NodeRun:
    """The node's run, its transient failures retried; a node with `fallbacks` moves to the next provider when
    one refuses, keeps failing after its retries, or has its circuit open. Its cost adds what failed jobs billed."""
    node = task.node
    name = subject(node)
    choice = first_choice(nodes, shell, task)
    billed = 0.0
    attempt = 1
    while True:
        try:
            run = run_or_await(nodes, shell, started, task, attempt, log=log, warn=warn, choice=choice)
            return replace(run, cost_usd=round(run.cost_usd + billed, 4)) if billed else run
        except VideoPipelineError as exc:
            transient = isinstance(exc, TransientError)
            if transient and attempt <= MAX_RETRIES:
                delay = backoff_delay(attempt - 1, base=RETRY_BASE_DELAY_SECONDS)
                warn(f"{node.id}: transient failure, attempt {attempt}: {exc}; retrying in {delay:.1f} s")
                sleep_interruptibly(delay)
                attempt += 1
                continue
            after = f" after {attempt} attempts" if transient else ""
            fallback = choice.next if choice is not None and falls_back(choice, exc) else None
            if choice is not None and fallback is not None:
                billed += choice.billed_failure(shell.ledger(node.id, nodes.tags_lock), nodes.env().pricing)
                warn(f"{node.id}: {choice.provider} failed{after}: {exc}; moving on to {fallback.provider}")
                choice, attempt = fallback, 1
                continue
            if isinstance(exc, MediaChecksFailed):
                # Not retried: the same work makes the same video. Not recorded: no materialization, nothing to reuse.
                log_checks(exc.outcomes)
            if started is not None:
                started.halt(f"{node.id} failed")
            tried = f" (its fallback after {', '.join(choice.fallback_from)})" if choice and choice.index else ""
            raise NodeFailed(f"{name} failed{after}{tried}: {exc}") from exc
        except Abandoned:
            why = (started.halted_by if started is not None else None) or "the run is ending"
            raise NodeFailed(f"{name} canceled: {why}, so the run fails") from None
