"""Admitting, submitting, retrying and canceling an execution: what every door does to start or change one.

Every door (validate, a local submit, the HTTP API, the plan sensor, the `plan` step of a Launchpad run) admits
through `admit`, so the same plan gets the same answer at each: parse the plan (input limits included), refuse
URLs to literal private addresses, check its base, resolve what it reuses, check its spend cap. A base that is
missing, failed, canceled or rejected is refused at once; one still pending or running WAITS, and the plan
sensor asks `admit` again until it ends. An execution is the tenant's of the key that submitted it; operators
submit as `DEFAULT_TENANT` and see every tenant. To a tenant, another tenant's base reads exactly as a missing
one (`missing_base`), so a refusal never tells whether the id exists.

A cancel is atomic with the launch: it wins against a PENDING submission or attempt (one conditional
UPDATE, as the sensor's claim), else it records a request the run obeys. So `canceled` is never
answered while a run can still work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from video_pipelines.errors import ExecutionConflict, PlanValidationError
from video_pipelines.executions.attempts import ExecutionRuns, cancel_requested, pending_attempt, stop_resume
from video_pipelines.executions.destinations import check_destinations
from video_pipelines.executions.outcomes import keep_caller_span, record_end_quietly, record_submitted
from video_pipelines.executions.records import RunRecords, RunState, RunView
from video_pipelines.executions.spending import check_estimate, expected_seconds, node_estimate
from video_pipelines.executions.status import ExecutionStatus, execution_status
from video_pipelines.net import AllowedHosts
from video_pipelines.plan import Plan, execution_order, levels, parse_plan, sinks
from video_pipelines.plan.model import check_base_dependencies, normalised_node_params
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.plan.reuse import BaseExecution, BaseNode, ResolvedPlan, resolve
from video_pipelines.providers import provider_jobs
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import (
    DEFAULT_TENANT,
    AttemptReason,
    AttemptStore,
    ProviderWaits,
    RunAttempt,
    SubmissionState,
    SubmissionStore,
)
from video_pipelines.telemetry.trace_context import new_execution_context, parse_traceparent
from video_pipelines.vocabulary import ExecutionState


@dataclass(frozen=True)
class Caller:
    """Who calls a door: an API key's tenant, or None for an operator (who sees every tenant)."""

    tenant: str | None

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def may_see(self, owner: str | None) -> bool:
        """Whether this caller may see an execution of tenant `owner` (None: no such execution)."""
        return owner is not None and (self.is_operator or self.tenant == owner)


OPERATOR = Caller(None)


def execution_tenant(records: RunRecords | None, store: SubmissionStore | None, execution_id: str) -> str | None:
    """The tenant of `execution_id`; None when it does not exist (or, without `records`, has no submission)."""
    submission = store.get(execution_id) if store is not None else None
    if submission is not None:
        return submission.tenant
    if records is not None and records.find_run(execution_id) is not None:
        return DEFAULT_TENANT
    return None


class BaseReadiness(StrEnum):
    NONE = "none"  # the plan names no base
    UNCHECKED = "unchecked"  # it names one, and the caller did not ask to look it up
    READY = "ready"
    WAITING = "waiting"
    UNUSABLE = "unusable"  # `admit` refuses the plan (PlanValidationError on `plan.baseExecutionId`)


@dataclass(frozen=True)
class BaseCheck:
    readiness: BaseReadiness
    reason: str | None = None
    base: BaseExecution | None = None


@dataclass(frozen=True)
class Admission:
    plan: Plan
    base: BaseCheck
    resolved: ResolvedPlan | None  # None while the base is waiting, unusable or unchecked


def admit(
    wire: Mapping[str, Any],
    records: RunRecords | None = None,
    store: SubmissionStore | None = None,
    *,
    tenant: str | None = None,
    pricing: PricingTable | None = None,
    allowed: AllowedHosts | None = None,
) -> Admission:
    """Admit a plan as `tenant` (None: an operator), or raise PlanValidationError naming every problem.

    Given `records`, its base is looked up: an unusable one is refused, a waiting one is admitted unresolved
    (`base.readiness` WAITING). Without `records` the base is not looked up (UNCHECKED). `allowed`: the hosts
    `VIDEO_PIPELINES_ALLOWED_HOSTS` allows, read from the environment unless given.
    """
    plan = parse_plan(wire)
    if tenant is not None and plan.webhook is not None and plan.webhook.secret_env:
        # The variable is read where webhooks are sent: a tenant must not have them signed with a deployment secret.
        raise PlanValidationError(
            [
                "plan.webhook.secretEnv: names an environment variable of the deployment, which only an operator may "
                "do; send the secret itself (webhook.secret, stored encrypted)"
            ]
        )
    check_destinations(plan, AllowedHosts.from_env() if allowed is None else allowed)
    if plan.base_execution_id is None:
        check, resolved = BaseCheck(BaseReadiness.NONE), resolve(plan)
    elif records is None:
        return Admission(plan, BaseCheck(BaseReadiness.UNCHECKED), None)
    else:
        check = check_base(records, store, plan.base_execution_id, tenant=tenant)
        if check.readiness is BaseReadiness.UNUSABLE:
            raise PlanValidationError([f"plan.baseExecutionId: {check.reason}"])
        if check.base is None:
            return Admission(plan, check, None)
        check_base_dependencies(plan, check.base.nodes)
        resolved = resolve(plan, check.base)
    if plan.max_cost_usd is not None:  # the pricing file is read only for a capped plan
        check_estimate(plan, resolved, pricing or PricingTable.from_env())
    return Admission(plan, check, resolved)


def missing_base(base_id: str) -> str:
    return f"base execution {base_id} does not exist"


def check_base(
    records: RunRecords, store: SubmissionStore | None, base_id: str, *, tenant: str | None = None
) -> BaseCheck:
    """Whether `base_id` can serve as a base now; another `tenant`'s reads as missing."""
    if tenant is not None and execution_tenant(records, store, base_id) != tenant:
        return BaseCheck(BaseReadiness.UNUSABLE, missing_base(base_id))
    run = records.find_run(base_id)
    if run is None:
        return _submitted_base(store, base_id)
    if not run.state.is_finished:
        return BaseCheck(BaseReadiness.WAITING, f"base execution {base_id} is {run.state.value}")
    if run.state is not RunState.SUCCESS:
        state = "canceled" if run.state is RunState.CANCELED else "failed"
        reason = f"base execution {base_id} {state} (run {run.run_id}); submit against a completed base"
        return BaseCheck(BaseReadiness.UNUSABLE, reason)
    base_plan = run.parsed_plan
    nodes = {
        node_id: BaseNode(
            node_id=node_id,
            operation=record.operation,
            lineage=record.lineage,
            result=record.result,
            params=normalised_node_params(base_plan.node(node_id)) if node_id in base_plan.by_id else None,
        )
        for node_id, record in ExecutionRuns.of(records, run).node_records(records).items()
    }
    final = sinks(base_plan)[-1].id
    if final not in nodes:
        return BaseCheck(BaseReadiness.UNUSABLE, f"base execution {base_id} has no result for its final node {final}")
    base = BaseExecution(execution_id=base_id, nodes=nodes, final_node_id=final)
    return BaseCheck(BaseReadiness.READY, base=base)


def _submitted_base(store: SubmissionStore | None, base_id: str) -> BaseCheck:
    submission = store.get(base_id) if store is not None else None
    if submission is None:
        return BaseCheck(BaseReadiness.UNUSABLE, missing_base(base_id))
    if submission.state is SubmissionState.REJECTED:
        return BaseCheck(BaseReadiness.UNUSABLE, f"base execution {base_id} was rejected: {submission.error}")
    if submission.state is SubmissionState.CANCELED:
        return BaseCheck(BaseReadiness.UNUSABLE, f"base execution {base_id} was canceled")
    return BaseCheck(BaseReadiness.WAITING, f"base execution {base_id} is pending")


def validation_report(admission: Admission, pricing: PricingTable) -> dict[str, Any]:
    """What the admitted plan would do (`video-pipelines validate --json`): what would run and what would be
    reused, node by node in execution order, with costs at list prices (an unknown remote price makes the
    total "+ unknown" rather than free)."""
    plan, resolved = admission.plan, admission.resolved
    seconds = expected_seconds(plan, resolved)
    level = levels(plan)
    nodes = []
    total, unknown = 0.0, False
    for node in execution_order(plan):
        decision = resolved.decisions[node.id] if resolved else None
        action = decision.action.value if decision else "run"
        cost: float | None = 0.0
        if action == "run":
            cost = node_estimate(node, resolved, seconds, pricing)
            unknown = unknown or cost is None
            total += cost or 0.0
        nodes.append(
            {
                "id": node.id,
                "operation": node.operation.value,
                "level": level[node.id],
                "dependsOn": list(node.depends_on),
                "action": action,
                "reason": decision.reason if decision and decision.reason != "new" else None,
                "reusedFrom": decision.reused_from if decision else None,
                "estimatedCost": cost,
            }
        )
    return {
        "valid": True,
        "levels": max(level.values()) + 1,
        "baseExecutionId": plan.base_execution_id,
        "baseNote": admission.base.reason,
        "estimatedCost": round(total, 4),
        "costUnknown": unknown,
        "maxCostUsd": plan.max_cost_usd,
        "nodes": nodes,
    }


def submit(
    admission: Admission,
    store: SubmissionStore,
    *,
    idempotency_key: str | None = None,
    caller: Caller = OPERATOR,
    trace_parent: str | None = None,
) -> str:
    """Store a plan `admit` admitted as `caller`'s tenant's; returns its execution id (the same for the same key)."""
    plan = admission.plan
    submission, created = store.submit(
        plan.to_wire(include_secret=False),
        SubmitOptions.of(plan, idempotency_key),
        tenant=DEFAULT_TENANT if caller.tenant is None else caller.tenant,
        traceparent=new_execution_context(trace_parent).traceparent,
    )
    caller_span = parse_traceparent(trace_parent)
    if created and caller_span is not None:
        keep_caller_span(store, submission.execution_id, caller_span)
    record_submitted(submission, created=created, parent=caller_span)
    return submission.execution_id


def request_retry(records: RunRecords, store: SubmissionStore, execution_id: str) -> RunAttempt:
    """Record a retry of a failed or canceled execution that ran (idempotent while pending)."""
    status = execution_status(records, store, execution_id)
    latest = records.find_run(execution_id)
    if latest is None:
        raise ExecutionConflict(
            f"execution {execution_id} is {status.state.value} and never ran, so there is nothing to retry; "
            "submit its plan again"
        )
    pending = pending_attempt(store, latest)  # one whose run exists already is no longer pending
    if pending is not None:
        return pending
    if status.state not in (ExecutionState.FAILED, ExecutionState.CANCELED):
        raise ExecutionConflict(
            f"execution {execution_id} is {status.state.value}; only a failed or canceled execution can be retried"
        )
    runs = ExecutionRuns.of(records, latest)
    attempt, _created = AttemptStore(store).request(
        execution_id, runs.attempt + 1, AttemptReason.RETRY, previous_run_id=latest.run_id
    )
    return attempt


def retry(records: RunRecords, store: SubmissionStore, execution_id: str) -> ExecutionStatus:
    """Run a failed or canceled execution again (its completed nodes reused); returns its status."""
    request_retry(records, store, execution_id)
    return execution_status(records, store, execution_id)


# What a cancel cannot change any more (canceling a canceled execution again answers its status, as one cancel did).
_CANCEL_TOO_LATE = (ExecutionState.COMPLETED, ExecutionState.FAILED)


def cancel(records: RunRecords, store: SubmissionStore, execution_id: str) -> ExecutionStatus:
    """Cancel a pending submission or attempt, or have its launched run run nothing more, or end a parked execution
    (its provider jobs canceled at once, though its run ended: it is `processing`); returns the status.
    ExecutionConflict for a completed or failed execution."""
    # What only a cancel uses (webhooks with their HTTP client, parked executions): no submit imports it.
    from video_pipelines.executions.notifications import enqueue_webhook
    from video_pipelines.executions.parking import cancel_jobs, end_parked
    from video_pipelines.webhooks import DeliveryOutbox

    state = execution_status(records, store, execution_id).state
    if state in _CANCEL_TOO_LATE:
        raise ExecutionConflict(
            f"execution {execution_id} is {state.value}; only a pending or processing execution can be canceled"
        )
    # Read once: a run that ends parked after this read is live to the request below, which the poller's sweep
    # then finds on the parked run (read twice, a run ending parked between the reads took no request at all).
    latest = records.find_run(execution_id)
    if end_parked(records, store, latest, "canceled", provider_jobs):
        return execution_status(records, store, execution_id)
    attempts = AttemptStore(store)
    resume_stopped = stop_resume(records, store, execution_id)
    # A finished run takes no request (a retry or resume would take it for a live one); a launch asked for does.
    live = latest is None or not latest.state.is_finished
    # Each PENDING move first, then the request: a claim between the two is caught by the request.
    attempt_canceled = attempts.cancel_pending(execution_id)
    attempts.request_cancel(execution_id, launched=live)
    if resume_stopped or attempt_canceled:
        # Its last run ended before; ending the attempt that was to follow it ends the execution (if not already).
        record_end_quietly(records, store, execution_id)
    if store.cancel_pending(execution_id):
        # Canceled before it ran: its webhook says so (sent by the webhook_deliveries sensor).
        enqueue_webhook(records, store, DeliveryOutbox(store), execution_id)
        record_end_quietly(records, store, execution_id)
    else:
        store.request_cancel(execution_id, launched=live)
    # Read after the request: a run created later than this finds the request when its `plan` step starts.
    run = records.find_run(execution_id)
    if run is not None:
        stop_run(records, store, run)
    # Jobs its nodes parked on already; one that parks later is canceled by the poller (its execution ended).
    if ProviderWaits(store).cancel_execution(execution_id):
        cancel_jobs(store, provider_jobs, execution_id)
    return execution_status(records, store, execution_id)


# A run whose worker has not begun it. Terminating one fails it under DefaultRunLauncher: Dagster's run worker
# leaves alone a run it finds CANCELING, and its code server then reports the run failed.
_NOT_BEGUN = (RunState.NOT_STARTED, RunState.STARTING)


def stop_run(records: RunRecords, store: SubmissionStore, run: RunView) -> bool:
    """Have a run of a canceled execution run nothing more; True when it was terminated or canceled."""
    if run.state.is_finished:
        return False
    if run.state in _NOT_BEGUN and cancel_requested(store, run):
        return records.cancel_unbegun(run.run_id)
    records.terminate(run.run_id)
    return True
