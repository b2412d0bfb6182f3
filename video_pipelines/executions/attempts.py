"""An execution's attempts: its first run, and the runs that resume or retry it.

An execution runs as one run of `execute_plan`, unless:

- **its run worker is lost** (the process killed by a signal, out of memory, a machine gone; or
  a step's database connection cut by a restart, or a task the broker lost or refused):
  that run fails and the execution is *resumed* automatically, as a new run of the same
  execution id, up to `VIDEO_PIPELINES_MAX_RESUMES` times in a row (default 2). Meanwhile its
  status stays `processing` and no end webhook is sent: only the final outcome is reported.
  When the resumes run out, the error names what was lost and the node that was running.
- **a user retries it** after it failed or was canceled (`video-pipelines retry`,
  `POST /api/execute/{id}/retry`).

Either way a pending attempt is recorded in the submission store (`AttemptStore`), and the
plan sensor launches it as attempt n (run tags `video/attempt`, `video/attempt_reason`,
`video/previous_run_id`) with the plan and tags of the run it follows. Its `plan` step
*carries* every node an earlier run of the execution completed with the same lineage
(`carry_completed`): recorded again in the new run as completed, with its original cost, and
never run again. A resumed run also takes the provider-job ledger tags of the nodes that had
not completed, so a prediction in flight when the worker died is resumed, not created (and
paid for) a second time. A retry takes none: a retried node failed, and its provider job with it.

Status reads every run of the execution (`ExecutionRuns`): node results of earlier runs count
(a run re-executed from failure in the Dagster UI skips the steps that succeeded, whose
records stay in the run before), and `attempts` lists the runs.

Why not Dagster's run retries (`run_retries` in dagster.yaml)? Run monitoring fails a run
past its deadline (`dagster/max_runtime`) just as it fails one whose worker died (no failure
reason on either), so Dagster would retry an execution its deadline ended, with a new clock.
And a Dagster re-execution is built from a code location, which the CLI and the HTTP API do
not load; a sensor's run request is launched by the daemon, which has one.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from video_pipelines.errors import UsageError
from video_pipelines.executions.records import (
    ATTEMPT_REASON_TAG,
    ATTEMPT_TAG,
    MAX_RUNTIME_TAG,
    PREVIOUS_RUN_TAG,
    PROVIDER_JOB_TAG_PREFIX,
    REEXECUTION_PARENT_TAG,
    NodeRecord,
    RunRecords,
    RunState,
    RunView,
)
from video_pipelines.plan.reuse import Action, NodeDecision, ResolvedPlan
from video_pipelines.submissions import AttemptReason, AttemptState, AttemptStore, RunAttempt, SubmissionStore
from video_pipelines.vocabulary import NodeState

MAX_RESUMES_ENV = "VIDEO_PIPELINES_MAX_RESUMES"
DEFAULT_MAX_RESUMES = 2


def max_resumes(environ: Mapping[str, str] | None = None) -> int:
    """How many times in a row an execution is resumed after a lost worker (`$VIDEO_PIPELINES_MAX_RESUMES`)."""
    value = ((os.environ if environ is None else environ).get(MAX_RESUMES_ENV) or "").strip()
    if not value:
        return DEFAULT_MAX_RESUMES
    if not value.isdigit():
        raise UsageError(f"{MAX_RESUMES_ENV} must be a whole number >= 0 (0: never resume); got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ExecutionRuns:
    """Every run of one execution, oldest first: its attempts (and runs re-executed from the Dagster UI)."""

    runs: tuple[RunView, ...]

    @classmethod
    def of(cls, records: RunRecords, latest: RunView) -> ExecutionRuns:
        """The runs of `latest`'s execution, ending with `latest` (the newest run, as `find_run` gives it)."""
        earlier = [run for run in records.execution_runs(latest.execution_id) if run.run_id != latest.run_id]
        return cls((*earlier, latest))

    @property
    def latest(self) -> RunView:
        return self.runs[-1]

    @property
    def attempt(self) -> int:
        """The latest run's attempt number: its place among the execution's runs, from 1."""
        return len(self.runs)

    def node_records(self, records: RunRecords) -> dict[str, NodeRecord]:
        """The nodes with a video in any run of the execution; a later run's record wins."""
        merged: dict[str, NodeRecord] = {}
        for run in self.runs:
            merged.update(records.node_records(run.run_id))
        return merged

    def resumes_in_a_row(self) -> int:
        """How many of the latest runs, counting back, were automatic resumes."""
        count = 0
        for run in reversed(self.runs):
            if run.tags.get(ATTEMPT_REASON_TAG) != AttemptReason.RESUME.value:
                break
            count += 1
        return count


# What Dagster's run monitoring writes when it ends a run past its `dagster/max_runtime`
# (dagster/_daemon/monitoring/run_monitoring.py `check_run_timeout`): "Canceling due to
# exceeding maximum runtime of N seconds." on canceling, "Exceeded maximum runtime of N seconds." on failing.
_MAX_RUNTIME_MESSAGE = re.compile(r"(?:exceeding|Exceeded) maximum runtime of (\d+) seconds")


def deadline_exceeded(records: RunRecords, run: RunView) -> int | None:
    """The deadline in seconds when run monitoring ended this run for passing it, else None."""
    if MAX_RUNTIME_TAG not in run.tags:
        return None  # no deadline: no need to read the run's events
    for message in records.run_messages(run.run_id):
        match = _MAX_RUNTIME_MESSAGE.search(message)
        if match:
            return int(match.group(1))
    return None


def lost_worker(records: RunRecords, run: RunView) -> str | None:
    """How `run`'s worker was lost, when that is why it failed (None for every other ending).

    A run its deadline ended is not lost, whatever happened to its worker on the way: resuming
    it would start the deadline's clock again.
    """
    if run.state is not RunState.FAILURE or deadline_exceeded(records, run) is not None:
        return None
    return records.lost_worker(run)


def resume_cause(records: RunRecords, runs: ExecutionRuns, limit: int | None = None) -> str | None:
    """Why the latest run is to be resumed (its lost worker), or None: it did not lose one, no resume is
    left, or its execution's deadline had passed when it ended."""
    cause = lost_worker(records, runs.latest)
    return cause if cause is not None and may_resume(runs, limit) else None


def may_resume(runs: ExecutionRuns, limit: int | None = None) -> bool:
    """Whether the latest run, if its worker was lost, is resumed: a resume is left (`resumes_left`) and
    some of the execution's deadline was left when the run ended (`deadline_left`)."""
    left = deadline_left(runs, at=runs.latest.ended_at)
    return resumes_left(runs, limit) and (left is None or left >= MIN_RESUME_SECONDS)


# A resume with less of the deadline than this left is not worth starting: the run would be ended
# by its deadline before it did anything, possibly after starting a provider job.
MIN_RESUME_SECONDS = 5.0


def deadline_left(runs: ExecutionRuns, *, at: float | None = None) -> float | None:
    """Seconds left, at time `at` (default now), of the deadline (`timeoutSeconds`) of the latest run's
    attempt: counted from when the run that the latest resumes in a row follow started, since a
    resume carries on the same attempt. None: the plan has no deadline."""
    timeout = plan_timeout(runs.latest)
    if timeout is None:
        return None
    chain = runs.runs[len(runs.runs) - 1 - runs.resumes_in_a_row() :]
    started = next((run.started_at for run in chain if run.started_at is not None), None)
    if started is None:
        return float(timeout)
    return timeout - ((time.time() if at is None else at) - started)


def plan_timeout(run: RunView) -> int | None:
    """The plan's `timeoutSeconds`: each attempt's deadline (a resumed run's tag holds what was left of it)."""
    value = run.plan.get("timeoutSeconds")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def resumes_left(runs: ExecutionRuns, limit: int | None = None) -> bool:
    """Whether the execution may be resumed once more (`limit`, default `max_resumes()`, counts resumes in a row)."""
    return runs.resumes_in_a_row() < (max_resumes() if limit is None else limit)


def request_resume(records: RunRecords, store: SubmissionStore, run: RunView) -> RunAttempt | None:
    """Record the resume of `run`'s execution when its worker was lost and resumes are left; idempotent."""
    latest = records.find_run(run.execution_id)
    if latest is None or latest.run_id != run.run_id:
        return None  # a later run exists: this one was resumed, retried or re-executed already
    runs = ExecutionRuns.of(records, latest)  # the record's view: it knows when the run started and ended
    if resume_cause(records, runs) is None or cancel_requested(store, latest):
        return None  # not lost, no resume left, or canceled by a user: its worker died as it was stopped
    attempt, _created = AttemptStore(store).request(
        run.execution_id, runs.attempt + 1, AttemptReason.RESUME, previous_run_id=run.run_id
    )
    return attempt


def stop_resume(records: RunRecords, store: SubmissionStore, execution_id: str) -> bool:
    """Cancel the resume a lost run is waiting for (a user's cancel), before the resume sensor records it too.

    The resume is recorded as canceled, so `request_resume` finds it and launches nothing, and
    the execution ends `canceled`. True when a resume was stopped.
    """
    latest = records.find_run(execution_id)
    if latest is None:
        return False
    runs = ExecutionRuns.of(records, latest)
    if resume_cause(records, runs) is None:
        return False
    attempts = AttemptStore(store)
    attempts.request(execution_id, runs.attempt + 1, AttemptReason.RESUME, previous_run_id=latest.run_id)
    return attempts.cancel_pending(execution_id)


def resume_canceled(store: SubmissionStore | None, runs: ExecutionRuns) -> bool:
    """Whether the resume of the latest run was canceled by a user (`stop_resume`, or a cancel the run was to obey)."""
    if store is None:
        return False
    attempt = AttemptStore(store).get(runs.latest.execution_id, runs.attempt + 1)
    return (attempt is not None and attempt.state is AttemptState.CANCELED) or cancel_requested(store, runs.latest)


def cancel_requested(store: SubmissionStore, run: RunView) -> bool:
    """Whether `run`'s execution was canceled after the plan sensor asked for this run: then it runs no node.

    The run of a submission (attempt 1) obeys the submission's request, the run of attempt n that
    attempt's; a later retry is a new attempt, not canceled. A Dagster re-execution (launched from the
    UI, `dagster/parent_run_id`) was launched by an operator after any such cancel: it is not concerned.
    """
    if REEXECUTION_PARENT_TAG in run.tags:
        return False
    if run.attempt == 1:
        submission = store.get(run.execution_id)
        return submission is not None and submission.cancel_requested_at is not None
    attempt = AttemptStore(store).get(run.execution_id, run.attempt)
    return attempt is not None and attempt.cancel_requested_at is not None


def pending_attempt(store: SubmissionStore | None, run: RunView) -> RunAttempt | None:
    """The attempt recorded to follow `run` that the plan sensor has not launched yet."""
    if store is None:
        return None
    return next(
        (
            attempt
            for attempt in AttemptStore(store).of_execution(run.execution_id)
            if attempt.is_pending and attempt.previous_run_id == run.run_id
        ),
        None,
    )


def attempt_run_tags(
    attempt: RunAttempt, previous: RunView, completed: Mapping[str, NodeRecord], runs: ExecutionRuns
) -> dict[str, str]:
    """The tags of the run that makes `attempt`, besides the execution's own: which attempt, its
    deadline, and the ledger (`runs`: the execution's runs, ending with `previous`).

    A resume takes the provider jobs `previous` remembered for the nodes no run completed,
    so their steps resume those jobs instead of creating new ones. It also takes what is left
    of the deadline (`dagster/max_runtime` counts from each run's start; a resume must not
    restart the clock); a retry, a new attempt, has the whole of it again.
    """
    tags = {
        ATTEMPT_TAG: str(attempt.number),
        ATTEMPT_REASON_TAG: attempt.reason.value,
        PREVIOUS_RUN_TAG: previous.run_id,
    }
    timeout = plan_timeout(previous)
    if attempt.reason is AttemptReason.RESUME:
        for key, value in previous.tags.items():
            if key.startswith(PROVIDER_JOB_TAG_PREFIX) and key.removeprefix(PROVIDER_JOB_TAG_PREFIX) not in completed:
                tags[key] = value
        left = deadline_left(runs)
        if left is not None:
            tags[MAX_RUNTIME_TAG] = str(max(1, math.ceil(left)))
    elif timeout is not None:
        tags[MAX_RUNTIME_TAG] = str(timeout)
    return tags


def carry_completed(resolved: ResolvedPlan, earlier: Mapping[str, NodeRecord]) -> ResolvedPlan:
    """`resolved` with every node to run that an earlier run completed with the same lineage taken from that run."""
    decisions = dict(resolved.decisions)
    for node in resolved.to_run:
        record = earlier.get(node.id)
        if record is None or record.lineage != resolved.lineage[node.id]:
            continue
        decisions[node.id] = NodeDecision(
            node.id,
            Action.REUSE,
            f"completed by an earlier run of this execution ({record.run_id}): not run again",
            reused_from=record.reused_from,
            result=record.result,
            carried_from_run=record.run_id,
            cost_usd=record.cost_usd,
        )
    return replace(resolved, decisions=decisions)


def running_when_lost(records: RunRecords, run: RunView, node_ids: Sequence[str]) -> list[str]:
    """The nodes whose steps had started and not ended when `run` failed."""
    steps = records.node_steps(run.run_id, node_ids)
    return [node_id for node_id in node_ids if steps.get(node_id) is NodeState.RUNNING]


def lost_worker_error(cause: str, running: Sequence[str], resumes: int, *, deadline: int | None = None) -> str:
    """The error of an execution whose last run lost its worker with no resume left, or too little of
    its `deadline` (seconds) left to resume it."""
    where = f" while running node {', '.join(running)}" if running else ""
    if deadline is not None:
        after = f" (not resumed: too little of its {deadline} s deadline (timeoutSeconds) was left)"
    elif resumes:
        after = f" (resumed {resumes} time{'s' if resumes != 1 else ''} before; no resume left)"
    else:
        after = ""
    return f"run worker lost{where}: {cause}{after}"


__all__ = [
    "DEFAULT_MAX_RESUMES",
    "MAX_RESUMES_ENV",
    "ExecutionRuns",
    "attempt_run_tags",
    "cancel_requested",
    "carry_completed",
    "lost_worker",
    "lost_worker_error",
    "max_resumes",
    "may_resume",
    "pending_attempt",
    "request_resume",
    "resume_cause",
    "running_when_lost",
]
