"""An execution's attempts: its first run, and the runs that resume (a lost worker) or retry (a user) it.

Why not Dagster's run retries? Run monitoring fails a run past its deadline just as one whose worker
died, so Dagster would retry an execution its deadline ended; and a re-execution needs a code
location, which the CLI and the HTTP API do not load.
"""

from __future__ import annotations

import itertools
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

MAX_RESUMES_ENV = "VIDEO_PIPELINES_MAX_RESUMES"
DEFAULT_MAX_RESUMES = 2


def max_resumes(environ: Mapping[str, str] | None = None) -> int:
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
        """The execution's runs up to `latest`, oldest first. A run created after `latest` was read is left out:
        counted, it would make a second continuation (or resume) of the same run look like the next attempt."""
        runs = records.execution_runs(latest.execution_id)
        ids = [run.run_id for run in runs]
        earlier = runs[: ids.index(latest.run_id)] if latest.run_id in ids else runs
        return cls((*earlier, latest))

    @property
    def latest(self) -> RunView:
        return self.runs[-1]

    @property
    def attempt(self) -> int:
        return len(self.runs)

    def node_records(self, records: RunRecords) -> dict[str, NodeRecord]:
        """The nodes with a video in any run of the execution; a later run's record wins."""
        merged: dict[str, NodeRecord] = {}
        for run in self.runs:
            merged.update(records.node_records(run.run_id))
        return merged

    def chained(self) -> tuple[RunView, ...]:
        """The newest runs that resumed or continued the one before them, newest first: one attempt's runs."""
        chain = (AttemptReason.RESUME.value, AttemptReason.CONTINUE.value)
        return tuple(itertools.takewhile(lambda run: run.tags.get(ATTEMPT_REASON_TAG) in chain, reversed(self.runs)))

    def resumes_in_a_row(self) -> int:
        """The resumes of the attempt (its continuations, which no lost worker caused, do not count)."""
        return sum(1 for run in self.chained() if run.tags.get(ATTEMPT_REASON_TAG) == AttemptReason.RESUME.value)


# Dagster's run monitoring (`check_run_timeout`) on canceling or failing a run past `dagster/max_runtime`.
_MAX_RUNTIME_MESSAGE = re.compile(r"(?:exceeding|Exceeded) maximum runtime of (\d+) seconds")


def deadline_exceeded(records: RunRecords, run: RunView) -> int | None:
    """The deadline in seconds when run monitoring ended this run for passing it, else None."""
    if MAX_RUNTIME_TAG not in run.tags:
        return None  # no deadline: no need to read the run's events
    found = (_MAX_RUNTIME_MESSAGE.search(message) for message in records.run_messages(run.run_id))
    return next((int(match.group(1)) for match in found if match), None)


def lost_worker(records: RunRecords, run: RunView) -> str | None:
    """How `run`'s worker was lost, when that failed it; never past its deadline (a resume would restart it)."""
    if run.state is not RunState.FAILURE or deadline_exceeded(records, run) is not None:
        return None
    return records.lost_worker(run)


def resume_cause(records: RunRecords, runs: ExecutionRuns, limit: int | None = None) -> str | None:
    """Why the latest run is to be resumed (its lost worker), or None."""
    cause = lost_worker(records, runs.latest)
    return cause if cause is not None and may_resume(runs, limit) else None


def may_resume(runs: ExecutionRuns, limit: int | None = None) -> bool:
    """Whether a resume and enough of the deadline were left when the latest run ended."""
    left = deadline_left(runs, at=runs.latest.ended_at)
    return resumes_left(runs, limit) and (left is None or left >= MIN_RESUME_SECONDS)


# Less left is not worth a resume: its deadline would end it, maybe after starting a provider job.
MIN_RESUME_SECONDS = 5.0


def deadline_left(runs: ExecutionRuns, *, at: float | None = None) -> float | None:
    """Seconds left at `at` of the attempt's deadline, counted from the run its resumes and continuations follow
    (parked time counts)."""
    timeout = plan_timeout(runs.latest)
    if timeout is None:
        return None
    chain = runs.runs[len(runs.runs) - 1 - len(runs.chained()) :]
    started = next((run.started_at for run in chain if run.started_at is not None), None)
    if started is None:
        return float(timeout)
    return timeout - ((time.time() if at is None else at) - started)


def plan_timeout(run: RunView) -> int | None:
    value = run.plan.get("timeoutSeconds")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def resumes_left(runs: ExecutionRuns, limit: int | None = None) -> bool:
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
    """Record the resume a lost run waits for as canceled (a user's cancel); True when one was stopped."""
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
    if store is None:
        return False
    attempt = AttemptStore(store).get(runs.latest.execution_id, runs.attempt + 1)
    return (attempt is not None and attempt.state is AttemptState.CANCELED) or cancel_requested(store, runs.latest)


def cancel_requested(store: SubmissionStore, run: RunView) -> bool:
    """Whether `run`'s attempt was canceled after its launch was asked for (a UI re-execution never is)."""
    if REEXECUTION_PARENT_TAG in run.tags:
        return False
    if run.attempt == 1:
        submission = store.get(run.execution_id)
        return submission is not None and submission.cancel_requested_at is not None
    attempt = AttemptStore(store).get(run.execution_id, run.attempt)
    return attempt is not None and attempt.cancel_requested_at is not None


def pending_attempt(store: SubmissionStore | None, run: RunView) -> RunAttempt | None:
    attempts = AttemptStore(store).of_execution(run.execution_id) if store is not None else []
    return next((attempt for attempt in attempts if attempt.is_pending and attempt.previous_run_id == run.run_id), None)


def attempt_run_tags(
    attempt: RunAttempt, previous: RunView, completed: Mapping[str, NodeRecord], runs: ExecutionRuns
) -> dict[str, str]:
    """The attempt's run tags; a resume or continuation takes the uncompleted nodes' provider jobs and what is left
    of the deadline."""
    tags = {
        ATTEMPT_TAG: str(attempt.number),
        ATTEMPT_REASON_TAG: attempt.reason.value,
        PREVIOUS_RUN_TAG: previous.run_id,
    }
    timeout = plan_timeout(previous)
    if attempt.reason in (AttemptReason.RESUME, AttemptReason.CONTINUE):
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
    """`resolved` with every node an earlier run completed with the same lineage taken from that run."""
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


def lost_worker_error(cause: str, running: Sequence[str], resumes: int, *, deadline: int | None = None) -> str:
    where = f" while running node {', '.join(running)}" if running else ""
    if deadline is not None:
        after = f" (not resumed: too little of its {deadline} s deadline (timeoutSeconds) was left)"
    elif resumes:
        after = f" (resumed {resumes} time{'s' if resumes != 1 else ''} before; no resume left)"
    else:
        after = ""
    return f"run worker lost{where}: {cause}{after}"
