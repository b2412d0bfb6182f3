"""The execution life cycle, once for every door: admit, submit, status, cancel, webhooks.

Plain Python, no Dagster import: what it needs from the orchestrator comes through the `RunRecords`
protocol, which `orchestration/` implements over Dagster.
"""

from __future__ import annotations

from video_pipelines.executions.admission import Admission, BaseCheck, BaseReadiness, admit, check_base
from video_pipelines.executions.attempts import cancel_requested
from video_pipelines.executions.lifecycle import cancel, retry, stop_run, submit
from video_pipelines.executions.notifications import (
    EndedRunScan,
    WebhookTarget,
    deliver,
    delivery_record,
    delivery_report,
    enqueue_progress_events,
    enqueue_recently_ended,
    enqueue_running_events,
    enqueue_webhook,
    node_payload,
    redeliver,
    secret_lookup,
    started_payload,
    subscribed_events,
    webhook_payload,
    webhook_target,
)
from video_pipelines.executions.outcomes import (
    record_end,
    record_end_quietly,
    record_run_end,
    record_start,
    sweep_submission_ends,
)
from video_pipelines.executions.ownership import OPERATOR, Caller, execution_tenant
from video_pipelines.executions.records import (
    BASE_EXECUTION_ID_TAG,
    EXECUTION_ID_TAG,
    MAX_RUNTIME_TAG,
    PROVIDER_JOB_TAG_PREFIX,
    TRACEPARENT_TAG,
    NodeRecord,
    RunRecords,
    RunState,
    RunView,
    deadline_tags,
)
from video_pipelines.executions.report import validation_report
from video_pipelines.executions.status import ExecutionStatus, NodeStatus, execution_status
from video_pipelines.executions.tenancy import cancel_for, list_executions, require_visible, retry_for, status_for
from video_pipelines.executions.traces import execution_trace, keep_caller_span, trace_lookup

__all__ = [
    "BASE_EXECUTION_ID_TAG",
    "EXECUTION_ID_TAG",
    "MAX_RUNTIME_TAG",
    "OPERATOR",
    "PROVIDER_JOB_TAG_PREFIX",
    "TRACEPARENT_TAG",
    "Admission",
    "BaseCheck",
    "BaseReadiness",
    "Caller",
    "EndedRunScan",
    "ExecutionStatus",
    "NodeRecord",
    "NodeStatus",
    "RunRecords",
    "RunState",
    "RunView",
    "WebhookTarget",
    "admit",
    "cancel",
    "cancel_for",
    "cancel_requested",
    "check_base",
    "deadline_tags",
    "deliver",
    "delivery_record",
    "delivery_report",
    "enqueue_progress_events",
    "enqueue_recently_ended",
    "enqueue_running_events",
    "enqueue_webhook",
    "execution_status",
    "execution_tenant",
    "execution_trace",
    "keep_caller_span",
    "list_executions",
    "node_payload",
    "record_end",
    "record_end_quietly",
    "record_run_end",
    "record_start",
    "redeliver",
    "require_visible",
    "retry",
    "retry_for",
    "secret_lookup",
    "started_payload",
    "status_for",
    "stop_run",
    "submit",
    "subscribed_events",
    "sweep_submission_ends",
    "trace_lookup",
    "validation_report",
    "webhook_payload",
    "webhook_target",
]
