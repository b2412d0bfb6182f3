"""The webhook outbox: delivery records (where the secret is, never it) that lose nothing, repeat nothing.

    pending ──2xx──> delivered
       │  ──410 Gone, refused destination (SSRF), configuration error──> failed
       └──other answer, timeout, error: retried per the schedule, then──> failed
    delivered, failed ──redeliver──> pending (due at once, same webhook-id)

Delays are jittered so returning receivers are not hit by every sender at once. A body is encoded once
(`encode_payload`) and sent byte for byte at every attempt, so its signature always covers what was stored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa

from video_pipelines.errors import WebhookError
from video_pipelines.net import js_json_bytes, redact_url
from video_pipelines.net.retrying import jittered
from video_pipelines.plan.document import NODE_ID_PATTERN
from video_pipelines.submissions.rows import Rows, as_utc, moment, record
from video_pipelines.submissions.schema import migrate, webhook_attempts, webhook_deliveries
from video_pipelines.submissions.store import SubmissionStore
from video_pipelines.vocabulary import WebhookEvent

RETRY_DELAYS_ENV = "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS"
DEFAULT_RETRY_DELAYS: Final = (5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0)
MAX_RETRY_AFTER_SECONDS: Final = 3600.0
SUBMISSION_SOURCE: Final = "submission"
ENV_SOURCE_PREFIX: Final = "env:"
GONE_ERROR: Final = "receiver answered 410 Gone"
# The events a webhook is sent for: the states an execution ends in, then those a plan may
# subscribe to (`webhook.events`).
EVENTS: Final = tuple(event.value for event in WebhookEvent)
# What a later attempt's webhook id adds after the execution id (see `webhook_id_for`).
_ATTEMPT_MARKER: Final = "_attempt"


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


@dataclass(frozen=True)
class RetrySchedule:
    """The waits between attempts: `delays[i]` follows attempt i + 1."""

    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if any(not math.isfinite(delay) or delay < 0 for delay in self.delays):
            raise WebhookError(f"webhook retry delays must be seconds >= 0, got {self.delays}")
        if not 0 <= self.jitter < 1:
            raise WebhookError(f"webhook retry jitter must be a fraction in [0, 1), got {self.jitter}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetrySchedule:
        env = os.environ if environ is None else environ
        value = (env.get(RETRY_DELAYS_ENV) or "").strip()
        if not value:
            return cls()
        try:
            delays = tuple(float(part) for part in value.split(","))
        except ValueError:
            raise WebhookError(
                f"{RETRY_DELAYS_ENV} must be comma-separated seconds such as 5,30,120; got {value!r}"
            ) from None
        return cls(delays)

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (from 1), jittered; None after the last."""
        if attempt < 1:
            raise WebhookError(f"attempts are numbered from 1, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        return jittered(self.delays[attempt - 1], self.jitter)


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The body as JSON.stringify writes it (`js_json`), so a JavaScript receiver that re-serializes the parsed
    body, as the seed SDK's backend does, signs the same bytes."""
    return js_json_bytes(payload)


_D = webhook_deliveries.c
_A = webhook_attempts.c


def webhook_id_for(execution_id: str, event: str, node_id: str = "", attempt: int = 1) -> str:
    """`msg_<execution id>[_attempt<n>, n >= 2]_<event>[_<node id>]`: stable, new for each attempt."""
    if attempt < 1:
        raise WebhookError(f"an execution's attempts are numbered from 1, got {attempt}")
    execution = execution_id if attempt == 1 else f"{execution_id}{_ATTEMPT_MARKER}{attempt}"
    return f"msg_{execution}_{event}_{node_id}" if node_id else f"msg_{execution}_{event}"


def _named_execution(webhook_id: str) -> str | None:
    rest = webhook_id.removeprefix("msg_")
    if rest == webhook_id:
        return None
    # Node events first: only their names hold a '.', so a node named `a_completed` is not an event.
    for event in WebhookEvent:
        if event.is_node_event:
            named, marker, node_id = rest.partition(f"_{event.value}_")
            if marker and NODE_ID_PATTERN.fullmatch(node_id):
                return named
    for event in WebhookEvent:
        if not event.is_node_event and rest.endswith(f"_{event.value}"):
            return rest.removesuffix(f"_{event.value}")
    return None


def execution_of_webhook(webhook_id: str) -> str | None:
    """The execution id a `webhook_id_for` id names, or None: unambiguous, as execution ids hold no '.' or
    `_attempt` and node ids no '.'."""
    named = _named_execution(webhook_id)
    if not named or "." in named:
        return None
    execution_id, marker, number = named.partition(_ATTEMPT_MARKER)
    if not marker:
        return execution_id
    # Only the form webhook_id_for writes: n >= 2 in plain digits.
    if not execution_id or not number.isdigit() or number != str(int(number)) or int(number) < 2:
        return None
    return execution_id


def _moment(now: datetime | None) -> datetime:
    return moment(now, WebhookError)


def _delivery(row: sa.RowMapping) -> Delivery:
    return record(Delivery, row, body=row["body"].encode("utf-8"), state=DeliveryState(row["state"]))


def _row(delivery: Delivery) -> dict[str, Any]:
    return {**vars(delivery), "body": delivery.body.decode("utf-8"), "state": delivery.state.value}


def _check_delivery(event: WebhookEvent, node_id: str, secret_source: str | None, body: bytes) -> None:
    if not event.is_node_event and node_id:
        raise WebhookError(f"a {event.value} webhook is for the whole execution; got node {node_id!r}")
    if event.is_node_event and not NODE_ID_PATTERN.fullmatch(node_id):
        raise WebhookError(f"a {event.value} webhook needs the id of its plan node ([A-Za-z0-9_-]{{1,64}})")
    name = (secret_source or "").removeprefix(ENV_SOURCE_PREFIX)
    env_source = (secret_source or "").startswith(ENV_SOURCE_PREFIX) and bool(name.strip()) and "=" not in name
    if secret_source not in (None, SUBMISSION_SOURCE) and not env_source:
        # Never echo the value: a caller that got this wrong may have passed the secret itself.
        raise WebhookError(
            "secret_source must be None (unsigned), 'submission' or 'env:NAME' (an environment variable name), "
            "never the secret itself"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookError("a webhook body must be UTF-8 JSON (see encode_payload)") from None
    if "\x00" in text:
        raise WebhookError("a webhook body cannot contain NUL characters (JSON escapes them)")


def _next(outcome: AttemptOutcome, number: int, schedule: RetrySchedule, now: datetime) -> dict[str, Any]:
    if outcome.acknowledged:
        return {"state": DeliveryState.DELIVERED.value, "delivered_at": now, "last_error": None}
    if outcome.status_code == 410:
        return {"state": DeliveryState.FAILED.value, "last_error": GONE_ERROR}
    if outcome.refused or outcome.permanent:
        return {"state": DeliveryState.FAILED.value, "last_error": outcome.text}
    delay = schedule.delay_after(number)
    if delay is None:
        return {
            "state": DeliveryState.FAILED.value,
            "last_error": f"gave up after {number} attempts; the last: {outcome.text}",
        }
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER_SECONDS))
    return {"next_attempt_at": now + timedelta(seconds=delay), "last_error": outcome.text}


class DeliveryOutbox:
    """Webhook deliveries and their attempts, on a store's engine or on an engine it migrates."""

    def __init__(self, database: SubmissionStore | sa.Engine) -> None:
        if isinstance(database, SubmissionStore):
            self._rows = Rows(database.engine, database.reader)
        else:
            migrate(database)
            self._rows = Rows(database)

    def enqueue(
        self,
        *,
        execution_id: str,
        event: str,
        url: str,
        body: bytes,
        secret_source: str | None,
        node_id: str = "",
        attempt: int = 1,
        now: datetime | None = None,
    ) -> Delivery:
        """Record an event's webhook, due at once; an existing record is returned unchanged, also in a race."""
        if event not in EVENTS:
            raise WebhookError(f"a webhook event is one of {', '.join(EVENTS)}; got {event!r}")
        if not execution_id or not url:
            raise WebhookError("a webhook delivery needs an execution id and a URL")
        _check_delivery(WebhookEvent(event), node_id, secret_source, body)
        webhook_id = webhook_id_for(execution_id, event, node_id, attempt)
        at = _moment(now)
        delivery = Delivery(webhook_id, execution_id, event, node_id, url, body, secret_source, at, at, attempt=attempt)
        insert = webhook_deliveries.insert().values(_row(delivery))
        return self._rows.insert_once(delivery, insert, lambda: self.get(webhook_id))[0]

    def get(self, webhook_id: str) -> Delivery | None:
        return self._rows.first(sa.select(webhook_deliveries).where(_D.webhook_id == webhook_id), _delivery)

    def claim_due(
        self,
        now: datetime | None = None,
        limit: int = 20,
        lease_seconds: float = 60.0,
        *,
        exclude: Collection[str] = (),
    ) -> list[Delivery]:
        """Lease up to `limit` due, unleased deliveries (oldest due first) for `lease_seconds`."""
        if limit <= 0:
            return []
        at = _moment(now)
        due = sa.and_(
            _D.state == DeliveryState.PENDING.value,
            _D.next_attempt_at <= at,
            sa.or_(_D.lease_until.is_(None), _D.lease_until <= at),
        )
        if exclude:
            due = sa.and_(due, _D.webhook_id.not_in(list(exclude)))
        order = (_D.next_attempt_at, _D.created_at, _D.webhook_id)
        candidates = sa.select(_D.webhook_id).where(due).order_by(*order).limit(limit).with_for_update(skip_locked=True)
        lease = {"lease_until": at + timedelta(seconds=lease_seconds)}
        with self._rows.engine.begin() as connection:
            claimed = [
                webhook_id
                for webhook_id in connection.execute(candidates).scalars().all()
                # Conditional: of racing claimers, only one finds the delivery still free.
                if connection.execute(
                    webhook_deliveries.update().where(_D.webhook_id == webhook_id, due).values(**lease)
                ).rowcount
                == 1
            ]
            if not claimed:
                return []
            rows = connection.execute(
                sa.select(webhook_deliveries).where(_D.webhook_id.in_(claimed)).order_by(*order)
            ).mappings()
            return [_delivery(row) for row in rows]

    def record_attempt(
        self,
        delivery: Delivery,
        outcome: AttemptOutcome,
        *,
        schedule: RetrySchedule,
        now: datetime | None = None,
    ) -> Delivery:
        """Record one attempt and move a still pending delivery, in one transaction; returns it now."""
        finished = _moment(now)
        attempt = {
            "started_at": finished - timedelta(milliseconds=outcome.duration_ms),
            "finished_at": finished,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        }

        def change(connection: sa.Connection, current: sa.RowMapping) -> dict[str, Any]:
            number = int(current["attempts"]) + 1
            connection.execute(
                webhook_attempts.insert().values(webhook_id=delivery.webhook_id, number=number, **attempt)
            )
            values: dict[str, Any] = {"attempts": number}
            if as_utc(current["lease_until"]) == delivery.lease_until:
                values["lease_until"] = None
            if current["state"] == DeliveryState.PENDING.value:
                values.update(_next(outcome, number, schedule, finished))
            return values

        return self._change(delivery.webhook_id, change, " to record an attempt of")

    def redeliver(self, webhook_id: str, now: datetime | None = None) -> Delivery:
        """Make a delivery pending and due at `now` (a pending one keeps its lease); WebhookError if unknown."""
        at = _moment(now)
        pending = DeliveryState.PENDING.value
        reopened = {"state": pending, "delivered_at": None, "lease_until": None}
        return self._change(
            webhook_id, lambda _, current: {"next_attempt_at": at, **({} if current["state"] == pending else reopened)}
        )

    def _change(
        self,
        webhook_id: str,
        change: Callable[[sa.Connection, sa.RowMapping], dict[str, Any]],
        missing: str = "",
    ) -> Delivery:
        this = _D.webhook_id == webhook_id
        with self._rows.engine.begin() as connection:
            current = connection.execute(sa.select(webhook_deliveries).where(this).with_for_update()).mappings().first()
            if current is None:
                raise WebhookError(f"no webhook delivery {webhook_id}{missing}")
            connection.execute(webhook_deliveries.update().where(this).values(change(connection, current)))
            row = connection.execute(sa.select(webhook_deliveries).where(this)).mappings().one()
        return _delivery(row)

    def deliveries(self, execution_id: str) -> list[Delivery]:
        query = sa.select(webhook_deliveries).where(_D.execution_id == execution_id)
        return self._rows.all(query.order_by(_D.created_at, _D.webhook_id), _delivery)

    def attempts(self, webhook_id: str) -> list[Attempt]:
        query = sa.select(webhook_attempts).where(_A.webhook_id == webhook_id).order_by(_A.number, _A.id)
        return self._rows.all(query, lambda row: record(Attempt, row))
