"""The webhook body's bytes: encoded once, stored in the outbox and sent byte for byte at every attempt,
so its signature always covers what was stored. What it says is built by
`executions.notifications.webhook_payload`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from video_pipelines.vocabulary import WebhookEvent

# The events a webhook is sent for: the states an execution ends in, then those a plan may
# subscribe to (`webhook.events`).
EVENTS: Final = tuple(event.value for event in WebhookEvent)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON in UTF-8, in the payload's own key order; the same payload always gives the same bytes.

    Non-ASCII text is escaped (`\\u00e9`), so the body is plain ASCII: valid UTF-8 whatever the
    strings hold, and safe to store as text.
    """
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")
