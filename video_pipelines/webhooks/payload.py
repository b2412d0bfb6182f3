"""The webhook body (SPEC section 5), built from an execution's status document (section 4).

    {"executionId": "exec_...", "status": "completed|failed|canceled",
     "video": {"url", "duration", "aspectRatio", "width", "height", "status": "completed"} | null,
     "error": null | "...", "completedJobs": n, "totalJobs": n}

`video` is the final video of a completed execution; `error` says why a failed or canceled
one ended. The body is encoded once, stored in the outbox and sent byte for byte at every
attempt, so its signature always covers what was stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from video_pipelines.errors import WebhookError

EVENTS: Final = ("completed", "failed", "canceled")
_VIDEO_FIELDS: Final = ("url", "duration", "aspectRatio", "width", "height")
_DEFAULT_ERRORS: Final = {"failed": "the execution failed", "canceled": "the execution was canceled"}


def _video(execution_id: str, result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise WebhookError(f"execution {execution_id}: its result must be a video object, got {type(result).__name__}")
    missing = [field for field in _VIDEO_FIELDS if result.get(field) is None]
    if missing:
        raise WebhookError(f"execution {execution_id}: its result video has no {', '.join(missing)}")
    return {**{field: result[field] for field in _VIDEO_FIELDS}, "status": "completed"}


def payload_for(status: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook payload of an ended execution, from its status document.

    Raises `WebhookError` for an execution that has not ended (a webhook is only sent at the end).
    """
    execution_id = str(status.get("executionId") or "")
    if not execution_id:
        raise WebhookError("the status document has no executionId")
    state = status.get("status")
    if state not in EVENTS:
        raise WebhookError(
            f"execution {execution_id} is {state!r}; a webhook is sent only once it is completed, failed or canceled"
        )
    completed = state == "completed"
    payload = {
        "executionId": execution_id,
        "status": state,
        "video": _video(execution_id, status.get("result")) if completed else None,
        "error": None if completed else (status.get("error") or _DEFAULT_ERRORS[state]),
        "completedJobs": int(status.get("completedJobs") or 0),
        "totalJobs": int(status.get("totalJobs") or 0),
    }
    if "cost" in status:
        # What the providers charged for this execution, in USD (reused nodes cost nothing).
        jobs = status.get("jobs") or {}
        payload["cost"] = {
            "totalUsd": status["cost"],
            "jobs": {node_id: job.get("cost", 0.0) for node_id, job in jobs.items()},
        }
    return payload


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON in UTF-8, in the payload's own key order; the same payload always gives the same bytes.

    Non-ASCII text is escaped (`\\u00e9`), so the body is plain ASCII: valid UTF-8 whatever the
    strings hold, and safe to store as text.
    """
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")
