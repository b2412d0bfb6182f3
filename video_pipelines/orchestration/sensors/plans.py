"""The sensors: submitted plans become `execute_plan` runs; run starts and ends become signed webhooks.

The plan sensor: pending submissions become runs (`evaluate_submissions` decides). A submission is claimed
PENDING -> LAUNCHING in one conditional UPDATE before its run is asked for: an earlier cancel wins, a later
one is carried out once the run exists (`stop_run`). A LAUNCHING submission is asked for again every tick
until its run exists; the daemon deduplicates run keys.

Webhook sensors: run-status sensors enqueue an execution's start and end, `webhook_deliveries` sends what is
due. What the webhooks are is decided in `executions`; these sensors only say when. Retries wait for the
next ticks, so no tick sleeps past its long poll.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import dagster as dg

from video_pipelines.errors import ExecutionError, PlanValidationError
from video_pipelines.executions import (
    BASE_EXECUTION_ID_TAG,
    EXECUTION_ID_TAG,
    MAX_RUNTIME_TAG,
    TENANT_TAG,
    TRACEPARENT_TAG,
    BaseReadiness,
    EndedRunScan,
    RunRecords,
    RunView,
    admit,
    deadline_tags,
    deliver,
    enqueue_progress_events,
    enqueue_recently_ended,
    enqueue_running_events,
    enqueue_webhook,
    record_end_quietly,
    record_run_end,
    record_start,
    stop_run,
    sweep_submission_ends,
)
from video_pipelines.executions.attempts import ExecutionRuns, attempt_run_tags, request_resume
from video_pipelines.executions.notifications import RECENT_SECONDS, AttemptReport, secret_env_warning
from video_pipelines.executions.records import ATTEMPT_TAG, PREVIOUS_RUN_TAG, WORKER_TAG
from video_pipelines.orchestration.job.config import PlanConfig
from video_pipelines.orchestration.job.ops import execute_plan
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords, run_view
from video_pipelines.orchestration.sensors import ticks
from video_pipelines.orchestration.workers.celery_launcher import LOST_LAUNCH_SECONDS, VideoCeleryRunLauncher
from video_pipelines.plan import Plan, parse_plan
from video_pipelines.submissions import (
    DEFAULT_TENANT,
    AttemptState,
    AttemptStore,
    RunAttempt,
    Submission,
    SubmissionState,
    SubmissionStore,
)
from video_pipelines.submissions.worker_beats import BEAT_SECONDS
from video_pipelines.webhooks import DeliveryOutbox

log = logging.getLogger(__name__)
T = TypeVar("T")


INVALID_PLAN = "invalid plan: "


@dataclass
class SubmissionTick:
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    launched: dict[str, str] = field(default_factory=dict)  # execution id -> run id
    rejected: dict[str, str] = field(default_factory=dict)  # execution id -> error
    waiting: dict[str, str] = field(default_factory=dict)  # execution id -> why
    canceled: dict[str, str] = field(default_factory=dict)  # execution id -> run id terminated: canceled meanwhile
    errors: dict[str, str] = field(default_factory=dict)  # execution id -> unexpected error, retried next tick
    held: list[str] = field(default_factory=list)  # tenants whose submissions wait: their queue is full

    def reason(self) -> dg.SkipReason:
        """What a tick that asked for no run did (one that did shows its runs)."""
        return ticks.reason(
            [
                _named("rejected", {key: why.removeprefix(INVALID_PLAN) for key, why in self.rejected.items()}),
                _named("waiting for their base", self.waiting),
                _named("marked launched (their run exists)", self.launched),
                _named("canceled as they launched, run terminated", self.canceled),
                _named("could not be evaluated, tried again next tick", self.errors),
                f"held in the store, {QUEUED_RUNS_PER_TENANT} runs queued: {ticks.listed(self.held)}"
                if self.held
                else "",
            ],
            idle="nothing submitted",
        )


def _named(what: str, items: dict[str, str]) -> str:
    return f"{what}: {ticks.listed([f'{key} ({value})' for key, value in items.items()])}" if items else ""


def run_request_for(submission: Submission, plan: Plan) -> dg.RunRequest:
    tags = {
        EXECUTION_ID_TAG: submission.execution_id,
        TENANT_TAG: submission.tenant,
        "dagster/priority": str(plan.priority.dagster_priority),
    }
    if plan.base_execution_id:
        tags[BASE_EXECUTION_ID_TAG] = plan.base_execution_id
    # The plan's deadline: run monitoring ends the run past it (execution status maps that to the deadline).
    tags.update(deadline_tags(plan.timeout_seconds))
    if submission.traceparent:  # the execution's span context, for its nodes' spans
        tags[TRACEPARENT_TAG] = submission.traceparent
    return dg.RunRequest(
        run_key=submission.execution_id,
        run_config=dg.RunConfig(ops={"plan": PlanConfig.from_plan(plan)}),
        tags=tags,
    )


def _launched(
    run: RunView, cancel_requested: bool, store: SubmissionStore, records: RunRecords, tick: SubmissionTick, key: str
) -> None:
    tick.launched[key] = run.run_id
    if cancel_requested and stop_run(records, store, run):  # a queued run then never starts
        tick.canceled[key] = run.run_id


def _evaluate(submission: Submission, store: SubmissionStore, records: RunRecords, tick: SubmissionTick) -> None:
    """Launch, wait or reject one submission not launched yet (raises PlanValidationError for an invalid plan)."""
    execution_id = submission.execution_id
    existing = records.find_run(execution_id)
    if existing is not None:
        store.mark_launched(execution_id, existing.run_id)
        _launched(existing, submission.cancel_requested_at is not None, store, records, tick, execution_id)
        return
    if submission.state is SubmissionState.LAUNCHING:
        # Claimed and asked for, and still no run: asked for again (a daemon that stopped lost the request).
        tick.run_requests.append(run_request_for(submission, parse_plan(submission.plan)))
        return
    # A tenant's base must be its own; DEFAULT_TENANT submissions may be an operator's, who may use any base.
    # The doors' own decision, again: a base that failed since the submission is refused as at a door.
    tenant = None if submission.tenant == DEFAULT_TENANT else submission.tenant
    admission = admit(submission.plan, records, store, tenant=tenant)
    if admission.base.readiness is BaseReadiness.WAITING:
        tick.waiting[execution_id] = admission.base.reason or "waiting for its base"
    elif store.claim(execution_id):  # else it was canceled meanwhile: no run is asked for
        tick.run_requests.append(run_request_for(submission, admission.plan))


def attempt_key(attempt: RunAttempt) -> str:
    return f"{attempt.execution_id}:attempt-{attempt.number}"


# What a run of an execution carries on to its next attempt's run.
_EXECUTION_TAGS = frozenset(
    {EXECUTION_ID_TAG, TENANT_TAG, BASE_EXECUTION_ID_TAG, TRACEPARENT_TAG, MAX_RUNTIME_TAG, "dagster/priority"}
)


def _evaluate_attempt(attempt: RunAttempt, store: SubmissionStore, records: RunRecords, tick: SubmissionTick) -> None:
    attempts = AttemptStore(store)
    runs = records.execution_runs(attempt.execution_id)
    mine = {ATTEMPT_TAG: str(attempt.number), PREVIOUS_RUN_TAG: attempt.previous_run_id}
    existing = next((run for run in runs if mine.items() <= run.tags.items()), None)
    if existing is not None:
        attempts.mark_launched(attempt.execution_id, attempt.number, existing.run_id)
        _launched(existing, attempt.cancel_requested_at is not None, store, records, tick, attempt_key(attempt))
        return
    previous = next((run for run in runs if run.run_id == attempt.previous_run_id), None)
    if previous is None:
        raise ExecutionError(f"run {attempt.previous_run_id}, which attempt {attempt.number} follows, does not exist")
    execution = ExecutionRuns(tuple(runs))
    tags = {key: value for key, value in previous.tags.items() if key in _EXECUTION_TAGS}
    tags.update(attempt_run_tags(attempt, previous, execution.node_records(records), execution))
    request = dg.RunRequest(
        run_key=attempt_key(attempt),
        run_config=dg.RunConfig(ops={"plan": PlanConfig.model_validate(dict(previous.plan))}),
        tags=tags,
    )
    if attempt.state is AttemptState.LAUNCHING or attempts.claim(attempt.execution_id, attempt.number):
        tick.run_requests.append(request)  # else it was canceled meanwhile: no run is asked for


# Runs of one tenant waiting in Dagster's queue at most; its later submissions wait in the store, which takes turns
# between tenants by priority. Dagster's run queue reads every queued run at each pass that finds a free slot
# (several a second when runs are short): 200 queued runs were a third of the daemon's CPU, and the continuations of
# parked executions waited behind them. Ten a tenant keep the workers fed between ticks, and a tenant held back by
# its limit (VIDEO_PIPELINES_TENANT_MAX_RUNS) leaves room to the others. Continuations, resumes and retries are
# never held: their executions have begun.
QUEUED_RUNS_PER_TENANT = 10


def tenants_with_full_queues(records: DagsterRunRecords) -> set[str]:
    """The tenants with QUEUED_RUNS_PER_TENANT runs queued (one count, when fewer are queued in all)."""
    if records.queued_runs() < QUEUED_RUNS_PER_TENANT:
        return set()
    queued = Counter(run.tags.get(TENANT_TAG, DEFAULT_TENANT) for run in records.queued())
    return {tenant for tenant, count in queued.items() if count >= QUEUED_RUNS_PER_TENANT}


# Submissions a tick turns into run requests at most. A tick's requests become runs before the next tick looks:
# small batches let a submission made during a burst (another tenant's, a higher priority) in within a tick or two,
# and 10 a tick (a tick a second at least) is still more than the workers of one machine start.
SUBMISSIONS_PER_TICK = 10


def evaluate_submissions(
    store: SubmissionStore, instance: dg.DagsterInstance, limit: int = SUBMISSIONS_PER_TICK
) -> SubmissionTick:
    tick = SubmissionTick()
    records = DagsterRunRecords(instance)
    attempts = AttemptStore(store)
    for attempt in attempts.pending(limit):
        try:
            _evaluate_attempt(attempt, store, records, tick)
        except Exception as exc:  # one broken attempt must never stop the others
            log.exception(
                "attempt %d of %s could not be evaluated; it stays pending", attempt.number, attempt.execution_id
            )
            tick.errors[attempt_key(attempt)] = f"{type(exc).__name__}: {exc}"
    full = tenants_with_full_queues(records)
    tick.held = sorted(full)
    for submission in store.pending(limit, except_tenants=full):
        execution_id = submission.execution_id
        try:
            _evaluate(submission, store, records, tick)
        except PlanValidationError as exc:
            error = INVALID_PLAN + "; ".join(exc.problems)
            store.mark_rejected(execution_id, error)
            tick.rejected[execution_id] = error
        except Exception as exc:  # one broken submission must never stop the others
            log.exception("submission %s could not be evaluated; it stays pending", execution_id)
            tick.errors[execution_id] = f"{type(exc).__name__}: {exc}"
    return tick


# Dagster's sensor loop runs every 5 s at best: a tick with nothing to launch keeps looking for LONG_POLL_SECONDS
# (sensors run in threads, `sensors: use_threads`, so the others do not wait for this one).
LONG_POLL_SECONDS = 4.0
POLL_INTERVAL_SECONDS = 0.2


# The run-status sensors are the guarantee behind faster paths (`webhook_deliveries`' long poll sends webhooks within
# a fraction of a second; run monitoring finds a lost worker in tens of seconds): five of them ticking every second
# were most of an idle daemon's CPU (each tick is seven reads and writes of Dagster's sensor state, and a call to the
# code server), and the ticks of a busy one, whose runs they each take in batches anyway.
RUN_STATUS_SENSOR_SECONDS = 5
# Runs one tick takes (Dagster's default 5, read in the code server at each tick; a deployment's setting stays):
# with a tick every 5 s, 25 keeps the sensors abreast of 5 run ends a second.
PROCESS_LIMIT_ENV = "DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT"
os.environ.setdefault(PROCESS_LIMIT_ENV, "25")


def execution_run_sensor(
    name: str, status: dg.DagsterRunStatus, description: str
) -> Callable[[Callable[..., None]], dg.RunStatusSensorDefinition]:
    return dg.run_status_sensor(
        name=name,
        description=f"{description} Checked every {RUN_STATUS_SENSOR_SECONDS} s.",
        run_status=status,
        monitored_jobs=[execute_plan],
        minimum_interval_seconds=RUN_STATUS_SENSOR_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


def long_poll_sensor(
    description: str, *, job_name: str | None = None
) -> Callable[[Callable[..., dg.SensorResult]], dg.SensorDefinition]:
    # The job by name: a sensor holding the job object is rebuilt with the job's resources when Definitions load,
    # and that copy passes `owners=[]` on, a BetaWarning in every process that loads the code.
    return dg.sensor(
        job_name=job_name,
        description=f"{description} A tick looks for up to {LONG_POLL_SECONDS:g} s; the next starts 1 s after this "
        "one started, or at once if it took longer, by `video-pipelines daemon` (within 5 s by `dagster dev`; "
        "Frequency shows the 1 s minimum).",
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


def long_poll(look: Callable[[], T], found: Callable[[T], bool], wait_seconds: float, interval: float) -> T:
    """`look()` until `found` says so or `wait_seconds` pass."""
    deadline = time.monotonic() + wait_seconds
    while True:
        answer = look()
        if found(answer) or time.monotonic() + interval > deadline:
            return answer
        time.sleep(interval)


def log_tick(log: logging.Logger, tick: SubmissionTick) -> None:
    for request in tick.run_requests:
        log.info(f"{request.run_key}: launching a run of execute_plan")
    for key, run_id in tick.launched.items():
        log.info(f"{key}: its run {run_id} exists; marked launched")
    for key, run_id in tick.canceled.items():
        log.info(f"{key}: canceled while its run was launched; run {run_id} terminated (it runs no node)")
    for execution_id, why in tick.waiting.items():
        log.info(f"{execution_id} waits: {why}")
    for execution_id, error in tick.rejected.items():
        log.warning(f"{execution_id} rejected: {error}")
    for key, error in tick.errors.items():
        log.error(f"{key} could not be evaluated (it stays pending, tried again next tick): {error}")


@long_poll_sensor(
    "Launches plans submitted with `video-pipelines submit` or the API (variants wait for their base); "
    "the tick log says what was launched, what waits and what was rejected, and why.",
    job_name=execute_plan.name,
)
def submitted_plans(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SensorResult:
    store = submissions.store()
    tick = long_poll(
        lambda: evaluate_submissions(store, context.instance),
        lambda tick: bool(tick.run_requests or tick.rejected),
        LONG_POLL_SECONDS,
        POLL_INTERVAL_SECONDS,
    )
    log_tick(context.log, tick)
    for execution_id in tick.rejected:
        # Rejected before it ran: its webhook says so (sent by webhook_deliveries).
        enqueue_webhook(DagsterRunRecords(context.instance), store, DeliveryOutbox(store), execution_id)
        record_end_quietly(DagsterRunRecords(context.instance), store, execution_id)
    if tick.run_requests:
        return dg.SensorResult(run_requests=tick.run_requests)
    return dg.SensorResult(skip_reason=tick.reason())


@execution_run_sensor(
    "resume_lost_runs",
    dg.DagsterRunStatus.FAILURE,
    "When a run fails because its run worker was lost, has a new run resume it, reusing what was done; "
    "other failures are left alone (the tick log says why).",
)
def resume_lost_runs(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
    records = DagsterRunRecords(context.instance)
    run = run_view(context.dagster_run)
    attempt = request_resume(records, submissions.store(), run)
    if attempt is None:
        context.log.info(f"{run.execution_id}: run {run.run_id} failed; not a lost worker, or no resume left")
        return
    context.log.info(
        f"{run.execution_id}: run {run.run_id} lost its worker ({records.lost_worker(run)}); "
        f"attempt {attempt.number} will resume it"
    )


# A task that looks lost is looked at again after this, so a worker just taking it is not mistaken for none:
# by then the worker's next beat names it.
LOST_LAUNCH_RECHECK_SECONDS = BEAT_SECONDS + 1.0
# A child that took a run's task tags the run (`video/worker`) and starts it within a second or two: a run still
# STARTING this long after that tag never will (CI: the broker went away as the child took the task, whose
# start then failed outside its body; the worker held it on, and the run stayed STARTING until run monitoring's
# 300 s start timeout).
TAKEN_NEVER_STARTED_SECONDS = 30.0


def still_starting(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> Iterator[dg.DagsterRun]:
    """Those of the runs still STARTING, each read again as it is taken: failing one that started meanwhile would
    run its execution twice."""
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status is dg.DagsterRunStatus.STARTING:
            yield run


@dg.sensor(
    name="lost_launches",
    description=(
        "With warm Celery workers: fails as lost a run whose task the broker lost (a broker restarted without "
        f"its data), still STARTING {LOST_LAUNCH_SECONDS:g} s after its launch while a worker of its queue is idle, "
        f"or one a worker took and never started ({TAKEN_NEVER_STARTED_SECONDS:g} s); resume_lost_runs then resumes "
        "its execution. Without the Celery launcher it does nothing."
    ),
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def lost_launches(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    launcher = context.instance.run_launcher
    if not isinstance(launcher, VideoCeleryRunLauncher):
        return dg.SkipReason("runs are not launched through a broker")
    # A STARTING run was last updated as its launcher sent its task (the task id tag): older ones may be lost.
    launched_before = datetime.now(UTC) - timedelta(seconds=LOST_LAUNCH_SECONDS)
    filters = dg.RunsFilter(
        job_name=execute_plan.name, statuses=[dg.DagsterRunStatus.STARTING], updated_before=launched_before
    )
    records = context.instance.get_run_records(filters=filters, limit=100)
    old = [record.dagster_run for record in records]
    # A STARTING run's last update is then the tag of the child that took its task.
    taken_before = datetime.now(UTC) - timedelta(seconds=TAKEN_NEVER_STARTED_SECONDS)
    never_started = {
        record.dagster_run.run_id
        for record in records
        if WORKER_TAG in record.dagster_run.tags and record.update_timestamp <= taken_before
    }
    failed = 0
    for run in still_starting(context.instance, never_started):
        message = (
            f"{run.tags[WORKER_TAG]} took the run's Celery task {TAKEN_NEVER_STARTED_SECONDS:g} s ago or more and "
            "never started the run (the broker or result backend went away as it took it)"
        )
        context.log.warning(f"run {run.run_id} failed as lost, to be resumed: {message}")
        launcher.fail_lost_launch(run, message)
        failed += 1
    suspects = launcher.lost_in_broker([run for run in old if run.run_id not in never_started])
    if not suspects:
        return dg.SkipReason(
            f"{len(old)} runs starting for {LOST_LAUNCH_SECONDS:g} s or more, {failed} of them taken by "
            "a worker and never started (failed, to be resumed), none lost by the broker"
        )
    time.sleep(LOST_LAUNCH_RECHECK_SECONDS)
    still = list(still_starting(context.instance, suspects))
    lost = launcher.lost_in_broker(still)
    for run in still:
        if run.run_id in lost:
            context.log.warning(f"run {run.run_id} failed as lost, to be resumed: {lost[run.run_id]}")
            launcher.fail_lost_launch(run, lost[run.run_id])
    return dg.SkipReason(
        f"{len(old)} runs starting for {LOST_LAUNCH_SECONDS:g} s or more, {len(lost)} of them lost by the broker: "
        "failed, to be resumed"
    )


def log_attempts(log: logging.Logger, reports: list[AttemptReport]) -> None:
    for report in reports:
        (log.warning if report.failed else log.info)(report.line)


@execution_run_sensor(
    "webhook_on_started",
    dg.DagsterRunStatus.STARTED,
    "When an execution's run starts: warns on the run when its webhook's secretEnv is not set on the daemon, "
    "counts the execution's start (once), and POSTs the signed `execution.started` webhook to plans that "
    "subscribe to it.",
)
def webhook_on_started(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
    run = context.dagster_run
    view = run_view(run)
    # This sensor runs in the daemon's code server, where webhooks are sent: what it lacks, the sender lacks.
    warning = secret_env_warning(view.plan)
    if warning is not None:
        context.log.warning(f"{view.execution_id}: {warning}")
        context.instance.report_engine_event(warning, run)
    store = submissions.store()
    if enqueue_progress_events(DagsterRunRecords(context.instance), store, DeliveryOutbox(store), view.execution_id):
        log_attempts(context.log, deliver(store))
    else:
        context.log.info(
            f"{view.execution_id}: nothing to send at its start (no webhook subscribed to events, or already sent)"
        )
    # After the webhook, which a failed claim must not skip; `webhook_deliveries` claims it again once the run ended.
    record_start(store, view.execution_id)  # counted once, at its first run's start


def _webhook_sensor(status: dg.DagsterRunStatus, event: str, when: str, what: str = "") -> dg.RunStatusSensorDefinition:
    description = f"When a run {when}: POSTs the signed `{event}` webhook{what}, if not sent already."

    @execution_run_sensor(f"webhook_on_{event}", status, description)
    def notify(context: dg.RunStatusSensorContext, submissions: SubmissionStoreResource) -> None:
        store, run = submissions.store(), context.dagster_run
        view = run_view(run)
        ended = f"{view.execution_id}: run {run.run_id} ended ({run.status.value})"
        records = DagsterRunRecords(context.instance)
        if view.waits_on_providers:  # its execution goes on in a continuation, whose end is the one to send
            context.log.info(f"{ended} parked; its continuation ends the execution")
        elif (delivery := enqueue_webhook(records, store, DeliveryOutbox(store), view.execution_id)) is None:
            context.log.info(f"{ended}; no webhook to send")
        else:
            context.log.info(f"{ended}; webhook {delivery.webhook_id}")
            log_attempts(context.log, deliver(store))
        # After the webhook, which the span never delays. Counted and traced once, when it is the execution's end.
        record_run_end(records, store, view)

    return notify


# The end's webhook is usually sent first by `webhook_deliveries`' long poll; these make sure.
webhook_on_completed = _webhook_sensor(dg.DagsterRunStatus.SUCCESS, "completed", "succeeds", " with the final video")
webhook_on_failed = _webhook_sensor(
    dg.DagsterRunStatus.FAILURE, "failed", "fails", ", saying which node failed and why"
)
webhook_on_canceled = _webhook_sensor(dg.DagsterRunStatus.CANCELED, "canceled", "is canceled")


# Long-polls as the plan sensor does; the run-status sensors stay as the guarantee (enqueueing is idempotent).


def poll_deliveries(
    store: SubmissionStore,
    instance: dg.DagsterInstance,
    scan: EndedRunScan,
    *,
    wait_seconds: float = LONG_POLL_SECONDS,
    interval: float = POLL_INTERVAL_SECONDS,
) -> list[AttemptReport]:
    """Enqueue (node events of running executions, recent ends) and send, until something was sent or time is up."""
    records = DagsterRunRecords(instance)
    outbox = DeliveryOutbox(store)

    def look() -> list[AttemptReport]:
        enqueue_running_events(records, store, outbox, records.in_progress())
        enqueue_recently_ended(records, store, outbox, scan)
        return deliver(store)

    return long_poll(look, bool, wait_seconds, interval)


@long_poll_sensor(
    "Sends webhooks as soon as executions and their nodes end, and retries deliveries whose backoff has passed; "
    "the tick log lists every attempt and why one failed."
)
def webhook_deliveries(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SensorResult:
    # The cursor remembers where the scan for ended runs stands, so no tick re-reads what the last one handled.
    scan = EndedRunScan.from_json(json.loads(context.cursor) if context.cursor else None)
    store = submissions.store()
    # Ends of submissions that never ran whose claim failed where they ended (see `executions.outcomes`).
    since = datetime.now(UTC) - timedelta(seconds=RECENT_SECONDS)
    sweep_submission_ends(DagsterRunRecords(context.instance), store, since)
    reports = poll_deliveries(store, context.instance, scan)
    log_attempts(context.log, reports)
    reason = ticks.reason(ticks.deliveries(reports), idle="no webhook due")
    return dg.SensorResult(skip_reason=reason, cursor=json.dumps(scan.to_json()))
