"""Webhooks: the signed POSTs an execution sends. Plain Python: the sensors that enqueue and deliver are
in `orchestration`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

# Each name's module, imported at the first use of one of its names: the outbox alone needs no HTTP client.
_HOMES = {
    "ENV_SOURCE_PREFIX": "outbox",
    "RETRY_DELAYS_ENV": "outbox",
    "SUBMISSION_SOURCE": "outbox",
    "AttemptOutcome": "outbox",
    "Delivery": "outbox",
    "DeliveryOutbox": "outbox",
    "DeliveryState": "outbox",
    "RetrySchedule": "outbox",
    "encode_payload": "outbox",
    "execution_of_webhook": "outbox",
    "webhook_id_for": "outbox",
    "deliver_due": "sender",
    "send_once": "sender",
    "signature_headers": "sender",
    "unsigned_headers": "sender",
}

if not TYPE_CHECKING:  # mypy reads the imports above; a typo stays an error

    def __getattr__(name: str) -> object:
        if name not in _HOMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
