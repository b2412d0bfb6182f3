"""The work of a run's nodes: each computed once over its tenant's executions, some started ahead.

The work takes no step context (it may run in a thread ahead of its step): what only the
orchestrator knows comes through `RunShell`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from functools import partial
from typing import Protocol

from video_pipelines.errors import PlanValidationError, ProviderError
from video_pipelines.nodes.cache import NodeWork, single_flight
from video_pipelines.nodes.environment import NodeEnvironment, still_stored
from video_pipelines.nodes.fallbacks import LoggedCircuits, ProviderChoice
from video_pipelines.nodes.head_start import HeadStarts, Log, Work, await_result
from video_pipelines.nodes.runner import NodeChecks, NodeRun, run_node, typed_params
from video_pipelines.nodes.tasks import NodeTask
from video_pipelines.operations.checks import DEFAULT_BLOCKING, CheckName, CheckOutcome
from video_pipelines.plan.params import AnyParams
from video_pipelines.providers import JobLedger
from video_pipelines.providers.context import ProviderSlots, guarding_circuits, limiting_provider_jobs, parking_allowed
from video_pipelines.providers.http import Abandoned, Parked, sleep_interruptibly
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import DEFAULT_TENANT, NodeClaim, NodeResultIndex, ProviderWaits, SubmissionStore
from video_pipelines.submissions.breakers import ProviderCircuits
from video_pipelines.submissions.counters import counting_provider_errors
from video_pipelines.submissions.waits import SAME_LINEAGE

PARKING_ENV = "VIDEO_PIPELINES_PARKING"


def parking_enabled() -> bool:
    """Parking is on unless `VIDEO_PIPELINES_PARKING=off`: then a run holds its worker while its providers work."""
    return os.environ.get(PARKING_ENV, "").strip().lower() not in ("off", "0", "false", "no")


class RanSpan(Protocol):
    def ran(self, run: NodeRun) -> None: ...


class RunShell(Protocol):
    @property
    def run_id(self) -> str: ...

    def check_spend(self, task: NodeTask, params: AnyParams | None, pricing: PricingTable) -> None:
        """Raise when the node, paid, would take the plan past its maxCostUsd (`params`: None when invalid)."""

    def slots(self, node_id: str, log: Log) -> ProviderSlots:
        """The provider slots the node's step holds."""

    def span(self, task: NodeTask, attempt: int) -> AbstractContextManager[RanSpan]: ...

    def ledger(self, node_id: str, lock: threading.Lock) -> JobLedger: ...

    def park(self, task: NodeTask, parked: Parked, store: SubmissionStore, lock: threading.Lock) -> None:
        """Record that the node waits on its provider job (`nodes.parking.park`)."""

    def run_has_ended(self, run_id: str) -> bool: ...

    def plan_caches(self) -> bool:
        """The plan's `cache` (a node computes anew when it or its plan says `"cache": false`)."""


class RunNodes:
    def __init__(
        self,
        make_env: Callable[[], NodeEnvironment],
        store: Callable[[], SubmissionStore],
        blocking: frozenset[CheckName] = DEFAULT_BLOCKING,
    ) -> None:
        self._make_env = make_env
        self.store = store
        self.blocking = blocking  # the media checks whose failure fails the node
        # The media checks of the nodes computed here, by (node id, lineage), until their steps log them.
        self.checks: dict[tuple[str, str], list[CheckOutcome]] = {}
        self._env: NodeEnvironment | None = None
        self._env_lock = threading.Lock()  # the threads of nodes started ahead ask for it too
        self.tags_lock = threading.Lock()  # see RunTagLedger
        self.started = HeadStarts()
        self._submissions: dict[str, tuple[str, bool]] = {}  # execution id -> (tenant, submitted)

    def env(self) -> NodeEnvironment:
        with self._env_lock:
            if self._env is None:  # built on first use, once per run (per step with the multiprocess executor)
                self._env = self._make_env()
            return self._env

    def take_checks(self, node_id: str, lineage: str) -> list[CheckOutcome]:
        return self.checks.pop((node_id, lineage), [])

    def _submission(self, execution_id: str) -> tuple[str, bool]:
        if execution_id not in self._submissions:
            submission = self.store().get(execution_id)
            found = (submission.tenant, True) if submission is not None else (DEFAULT_TENANT, False)
            self._submissions[execution_id] = found
        return self._submissions[execution_id]

    def tenant(self, execution_id: str) -> str:
        """The tenant whose node-result index the execution's nodes use (`DEFAULT_TENANT` for a direct launch)."""
        return self._submission(execution_id)[0]

    def parks(self, execution_id: str) -> bool:
        """Whether the execution's nodes park on their provider jobs: a submitted one, whose continuation the
        daemon launches (a run launched directly has no one to continue it), unless parking is turned off."""
        return self._submission(execution_id)[1] and parking_enabled()


def falls_back(choice: ProviderChoice | None, error: BaseException) -> bool:
    """Whether `error` moves a node on `choice` to its next provider: a provider's, with a fallback left."""
    return choice is not None and choice.next is not None and isinstance(error, ProviderError)


def first_choice(nodes: RunNodes, shell: RunShell, task: NodeTask) -> ProviderChoice | None:
    """The provider a node with fallbacks starts on: its own, or the one whose job an earlier run started."""
    with suppress(PlanValidationError):
        params = typed_params(task.node, task.upstream)
        if ProviderChoice.of(params) is not None:
            return ProviderChoice.of(params, shell.ledger(task.node.id, nodes.tags_lock).recall())
    return None


def _through_circuits(
    nodes: RunNodes, choice: ProviderChoice | None, log: Log, warn: Log
) -> AbstractContextManager[None]:
    """The node's provider calls through the deployment's circuits: an open one skipped when a fallback is left."""
    may_skip = choice is not None and choice.next is not None
    gate = LoggedCircuits(ProviderCircuits(nodes.store(), warn=warn), log, may_skip=may_skip)
    return guarding_circuits(gate, may_skip=may_skip)


def node_work(
    nodes: RunNodes, shell: RunShell, task: NodeTask, *, attempt: int, choice: ProviderChoice | None = None
) -> Work:
    """The node's work; `choice`: the provider of its fallbacks it calls (None: the node has none)."""
    node = task.node

    def compute(log: Log, warn: Log) -> NodeRun:
        params: AnyParams | None = None  # invalid: run_node raises the error again, after the spend check
        with suppress(PlanValidationError):
            params = typed_params(node, task.upstream)
            params = choice.applied(params) if choice is not None else params
        # Before anything starts at the provider: a paid node past the plan's maxCostUsd fails here.
        shell.check_spend(task, params, nodes.env().pricing)
        ledger = shell.ledger(node.id, nodes.tags_lock)
        with (
            counting_provider_errors(nodes.store(), warn=warn),
            _through_circuits(nodes, choice, log, warn),
            shell.span(task, attempt) as span,
            limiting_provider_jobs(shell.slots(node.id, log)),
            parking_allowed() if nodes.parks(task.execution_id) else nullcontext(),
        ):
            try:
                result = run_node(
                    node,
                    inputs=task.inputs,
                    upstream=task.upstream,
                    lineage=task.lineage,
                    env=nodes.env(),
                    log=log,
                    ledger=choice.ledger(ledger) if choice is not None else ledger,
                    # Inside the single flight: a video that fails a blocking check is never stored nor recorded.
                    checks=NodeChecks(audio=task.audio_expected, blocking=nodes.blocking),
                    params=params,
                )
            except Parked as parked:
                # Recorded where it parks (maybe ahead of its step): a run stopped before its step takes it still
                # leaves the job where a cancel and the poller find it. Inside the provider's slot: a pool counts
                # the job from the slot to the wait without a gap.
                shell.park(task, parked, nodes.store(), nodes.tags_lock)
                raise
            result = choice.made(result) if choice is not None else result  # before the single flight records it
            span.ran(result)
        # They wait for the node's step, which logs them (the work may run ahead of it, in a thread).
        nodes.checks[(node.id, task.lineage)] = result.checks
        return result

    def work(log: Log, warn: Log) -> NodeRun:
        return _once_per_lineage(nodes, shell, task, lambda: compute(log, warn), log, warn)

    return work


def _once_per_lineage(
    nodes: RunNodes, shell: RunShell, task: NodeTask, compute: Callable[[], NodeRun], log: Log, warn: Log
) -> NodeRun:
    store = nodes.store()

    def parked_on(holder: NodeClaim) -> str | None:
        wait = ProviderWaits(store).open_wait(holder.execution_id, holder.node_id)
        return wait.label if wait is not None else None

    try:
        return single_flight(
            NodeResultIndex(store),
            _flight(nodes, shell, task),
            compute,
            run_has_ended=shell.run_has_ended,
            log=log,
            sleep=sleep_interruptibly,
            stored=still_stored(nodes.env().store, warn),
            parked=parked_on,
            may_park=nodes.parks(task.execution_id),
        )
    except Parked as parked:
        if parked.provider == SAME_LINEAGE:  # parked by the flight on a follow (compute parks its own jobs)
            shell.park(task, parked, store, nodes.tags_lock)
        raise


def _flight(nodes: RunNodes, shell: RunShell, task: NodeTask) -> NodeWork:
    node = task.node
    return NodeWork(
        tenant=nodes.tenant(task.execution_id),
        lineage=task.lineage,
        execution_id=task.execution_id,
        node_id=node.id,
        operation=node.operation.value,
        run_id=shell.run_id,
        cache=node.cache and shell.plan_caches(),
    )


def task_key(task: NodeTask) -> object:
    return (task.inputs, task.upstream, task.lineage)


def start_ready(nodes: RunNodes, started: HeadStarts, shell: RunShell, log: Log) -> None:
    for task in started.ready():
        choice = first_choice(nodes, shell, task)
        work = node_work(nodes, shell, task, attempt=1, choice=choice)

        def then(done: NodeRun, log: Log, node_id: str = task.node.id) -> None:
            started.record(node_id, done.result)
            start_ready(nodes, started, shell, log)

        if started.start(task.node.id, task_key(task), work, then=then, falls_back=partial(falls_back, choice)):
            log(f"{task.node.id}: started ahead of its step: its inputs all exist")


def run_or_await(
    nodes: RunNodes,
    shell: RunShell,
    started: HeadStarts | None,
    task: NodeTask,
    attempt: int,
    *,
    log: Log,
    warn: Log,
    choice: ProviderChoice | None = None,
) -> NodeRun:
    node = task.node

    def info(message: str) -> None:
        log(f"{node.id}: {message}")

    def warning(message: str) -> None:
        warn(f"{node.id}: {message}")

    ahead = started.take(node.id, task_key(task)) if started is not None else None
    if ahead is not None:
        info("awaiting its work, started ahead of this step")
        return await_result(ahead, log=info, warn=warning)
    if started is not None and started.halted_by is not None and node.is_remote:
        raise Abandoned  # another node failed for good: no provider job for a run that will fail
    return node_work(nodes, shell, task, attempt=attempt, choice=choice)(info, warn)
