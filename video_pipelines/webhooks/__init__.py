"""Webhooks: the signed POSTs an execution sends. Plain Python: the sensors that enqueue and deliver are
in `orchestration`."""

from __future__ import annotations

from video_pipelines.errors import WebhookError, WebhookSecretError
from video_pipelines.net.retrying import parse_retry_after
from video_pipelines.webhooks.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from video_pipelines.webhooks.outbox import (
    DEFAULT_RETRY_DELAYS,
    ENV_SOURCE_PREFIX,
    RETRY_DELAYS_ENV,
    SUBMISSION_SOURCE,
    DeliveryOutbox,
    RetrySchedule,
    execution_of_webhook,
    webhook_id_for,
)
from video_pipelines.webhooks.payload import EVENTS, encode_payload
from video_pipelines.webhooks.sender import DEFAULT_TIMEOUT, MAX_TIMEOUT, deliver_due, send_once
from video_pipelines.webhooks.signing import signature_headers, standard_webhooks_key, unsigned_headers

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "DEFAULT_TIMEOUT",
    "ENV_SOURCE_PREFIX",
    "EVENTS",
    "MAX_TIMEOUT",
    "RETRY_DELAYS_ENV",
    "SUBMISSION_SOURCE",
    "Attempt",
    "AttemptOutcome",
    "Delivery",
    "DeliveryOutbox",
    "DeliveryState",
    "RetrySchedule",
    "WebhookError",
    "WebhookSecretError",
    "deliver_due",
    "encode_payload",
    "execution_of_webhook",
    "parse_retry_after",
    "send_once",
    "signature_headers",
    "standard_webhooks_key",
    "unsigned_headers",
    "webhook_id_for",
]
