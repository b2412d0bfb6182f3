"""Webhooks: the signed POSTs an execution sends. Plain Python: the sensors that enqueue and deliver are
in `orchestration`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.lazy import lazy_exports

if TYPE_CHECKING:
    from video_pipelines.webhooks.outbox import ENV_SOURCE_PREFIX as ENV_SOURCE_PREFIX
    from video_pipelines.webhooks.outbox import RETRY_DELAYS_ENV as RETRY_DELAYS_ENV
    from video_pipelines.webhooks.outbox import SUBMISSION_SOURCE as SUBMISSION_SOURCE
    from video_pipelines.webhooks.outbox import AttemptOutcome as AttemptOutcome
    from video_pipelines.webhooks.outbox import Delivery as Delivery
    from video_pipelines.webhooks.outbox import DeliveryOutbox as DeliveryOutbox
    from video_pipelines.webhooks.outbox import DeliveryState as DeliveryState
    from video_pipelines.webhooks.outbox import RetrySchedule as RetrySchedule
    from video_pipelines.webhooks.outbox import encode_payload as encode_payload
    from video_pipelines.webhooks.outbox import execution_of_webhook as execution_of_webhook
    from video_pipelines.webhooks.outbox import webhook_id_for as webhook_id_for
    from video_pipelines.webhooks.sender import deliver_due as deliver_due
    from video_pipelines.webhooks.sender import send_once as send_once
    from video_pipelines.webhooks.sender import signature_headers as signature_headers
    from video_pipelines.webhooks.sender import unsigned_headers as unsigned_headers

# Each module's names, the module imported at the first use of one: the outbox alone needs no HTTP client.
_EXPORTS = {
    "outbox": (
        "ENV_SOURCE_PREFIX",
        "RETRY_DELAYS_ENV",
        "SUBMISSION_SOURCE",
        "AttemptOutcome",
        "Delivery",
        "DeliveryOutbox",
        "DeliveryState",
        "RetrySchedule",
        "encode_payload",
        "execution_of_webhook",
        "webhook_id_for",
    ),
    "sender": ("deliver_due", "send_once", "signature_headers", "unsigned_headers"),
}

if not TYPE_CHECKING:  # mypy reads the imports above: a name that does not exist stays an error
    __getattr__ = lazy_exports(__name__, _EXPORTS)
