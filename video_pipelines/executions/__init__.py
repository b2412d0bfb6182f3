"""The execution life cycle, once for every door; plain Python, the orchestrator behind `RunRecords`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.lazy import lazy_exports

if TYPE_CHECKING:
    from video_pipelines.executions.attempts import cancel_requested as cancel_requested
    from video_pipelines.executions.lifecycle import OPERATOR as OPERATOR
    from video_pipelines.executions.lifecycle import Admission as Admission
    from video_pipelines.executions.lifecycle import BaseReadiness as BaseReadiness
    from video_pipelines.executions.lifecycle import Caller as Caller
    from video_pipelines.executions.lifecycle import admit as admit
    from video_pipelines.executions.lifecycle import cancel as cancel
    from video_pipelines.executions.lifecycle import retry as retry
    from video_pipelines.executions.lifecycle import stop_run as stop_run
    from video_pipelines.executions.lifecycle import submit as submit
    from video_pipelines.executions.lifecycle import validation_report as validation_report
    from video_pipelines.executions.notifications import EndedRunScan as EndedRunScan
    from video_pipelines.executions.notifications import WebhookTarget as WebhookTarget
    from video_pipelines.executions.notifications import deliver as deliver
    from video_pipelines.executions.notifications import delivery_record as delivery_record
    from video_pipelines.executions.notifications import delivery_report as delivery_report
    from video_pipelines.executions.notifications import enqueue_progress_events as enqueue_progress_events
    from video_pipelines.executions.notifications import enqueue_recently_ended as enqueue_recently_ended
    from video_pipelines.executions.notifications import enqueue_running_events as enqueue_running_events
    from video_pipelines.executions.notifications import enqueue_webhook as enqueue_webhook
    from video_pipelines.executions.notifications import node_payload as node_payload
    from video_pipelines.executions.notifications import redeliver as redeliver
    from video_pipelines.executions.notifications import secret_lookup as secret_lookup
    from video_pipelines.executions.notifications import started_payload as started_payload
    from video_pipelines.executions.notifications import webhook_payload as webhook_payload
    from video_pipelines.executions.notifications import webhook_target as webhook_target
    from video_pipelines.executions.outcomes import record_end as record_end
    from video_pipelines.executions.outcomes import record_end_quietly as record_end_quietly
    from video_pipelines.executions.outcomes import record_run_end as record_run_end
    from video_pipelines.executions.outcomes import record_start as record_start
    from video_pipelines.executions.outcomes import sweep_submission_ends as sweep_submission_ends
    from video_pipelines.executions.records import BASE_EXECUTION_ID_TAG as BASE_EXECUTION_ID_TAG
    from video_pipelines.executions.records import EXECUTION_ID_TAG as EXECUTION_ID_TAG
    from video_pipelines.executions.records import MAX_RUNTIME_TAG as MAX_RUNTIME_TAG
    from video_pipelines.executions.records import TENANT_TAG as TENANT_TAG
    from video_pipelines.executions.records import TRACEPARENT_TAG as TRACEPARENT_TAG
    from video_pipelines.executions.records import NodeRecord as NodeRecord
    from video_pipelines.executions.records import RunRecords as RunRecords
    from video_pipelines.executions.records import RunState as RunState
    from video_pipelines.executions.records import RunView as RunView
    from video_pipelines.executions.records import deadline_tags as deadline_tags
    from video_pipelines.executions.status import ExecutionStatus as ExecutionStatus
    from video_pipelines.executions.status import NodeStatus as NodeStatus
    from video_pipelines.executions.status import execution_status as execution_status
    from video_pipelines.executions.tenancy import cancel_for as cancel_for
    from video_pipelines.executions.tenancy import list_executions as list_executions
    from video_pipelines.executions.tenancy import require_visible as require_visible
    from video_pipelines.executions.tenancy import retry_for as retry_for
    from video_pipelines.executions.tenancy import status_for as status_for

# Each module's names, the module imported at the first use of one: a `submit` needs admission, not costs or logs.
_EXPORTS = {
    "attempts": ("cancel_requested",),
    "lifecycle": (
        "OPERATOR",
        "Admission",
        "BaseReadiness",
        "Caller",
        "admit",
        "cancel",
        "retry",
        "stop_run",
        "submit",
        "validation_report",
    ),
    "notifications": (
        "EndedRunScan",
        "WebhookTarget",
        "deliver",
        "delivery_record",
        "delivery_report",
        "enqueue_progress_events",
        "enqueue_recently_ended",
        "enqueue_running_events",
        "enqueue_webhook",
        "node_payload",
        "redeliver",
        "secret_lookup",
        "started_payload",
        "webhook_payload",
        "webhook_target",
    ),
    "outcomes": ("record_end", "record_end_quietly", "record_run_end", "record_start", "sweep_submission_ends"),
    "records": (
        "BASE_EXECUTION_ID_TAG",
        "EXECUTION_ID_TAG",
        "MAX_RUNTIME_TAG",
        "TENANT_TAG",
        "TRACEPARENT_TAG",
        "NodeRecord",
        "RunRecords",
        "RunState",
        "RunView",
        "deadline_tags",
    ),
    "status": ("ExecutionStatus", "NodeStatus", "execution_status"),
    "tenancy": ("cancel_for", "list_executions", "require_visible", "retry_for", "status_for"),
}

if not TYPE_CHECKING:  # mypy reads the imports above: a name that does not exist stays an error
    __getattr__ = lazy_exports(__name__, _EXPORTS)
