"""The webhook body's bytes: encoded once and sent byte for byte at every attempt, so its signature always
covers what was stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from video_pipelines.vocabulary import WebhookEvent

# The events a webhook is sent for: the states an execution ends in, then those a plan may
# subscribe to (`webhook.events`).
EVENTS: Final = tuple(event.value for event in WebhookEvent)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact ASCII JSON (non-ASCII escaped, so safe to store as text) in the payload's key order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")
