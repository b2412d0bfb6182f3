"""A webhook delivery, its attempts and a sender's outcome: shared by `outbox` and `sender`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from video_pipelines.net import redact_url


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One webhook (an execution's event, or a node's) and where its delivery stands. Holds no secret."""

    webhook_id: str
    execution_id: str
    event: str
    node_id: str  # the plan node of a node.* event; '' for an execution's events
    # A URL may carry a token in its query string: kept out of reprs (see `redacted_url`).
    url: str = field(repr=False)
    body: bytes = field(repr=False)
    secret_source: str | None
    next_attempt_at: datetime
    created_at: datetime
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    lease_until: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None
    # The execution's attempt (its Dagster run) the event happened in: 1 for its first run.
    attempt: int = 1

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class Attempt:
    """One POST of a delivery: when, how long, and the status code or the error."""

    id: int
    webhook_id: str
    number: int
    started_at: datetime
    finished_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended: the answer's status code, or the error that stopped it."""

    status_code: int | None = None
    error: str | None = None
    # Seconds the receiver asked to wait (Retry-After), when it did.
    retry_after: float | None = None
    # The destination was refused by the SSRF guard; no request was sent.
    refused: bool = False
    # A configuration error (the secret is not set, cannot be read or cannot sign): nothing was
    # sent, and trying again cannot help until someone fixes it, so the delivery fails at once.
    permanent: bool = False
    duration_ms: int = 0

    @property
    def acknowledged(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The error, else the answer's status."""
        answer = f"HTTP {self.status_code}" if self.status_code is not None else "no answer"
        return self.error or answer
