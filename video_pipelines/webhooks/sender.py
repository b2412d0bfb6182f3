"""Sending webhooks: the Standard Webhooks signature, one attempt (`send_once`), and every delivery that is
due (`deliver_due`).

An attempt POSTs to the checked IP with the original Host and SNI, so DNS cannot answer differently in
between; redirects are not followed (that would send the signed body somewhere never checked).
Sending raises nothing: it becomes an `AttemptOutcome`. Error texts never hold the secret nor the URL's query.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from standardwebhooks import Webhook

from video_pipelines.errors import BlockedDestinationError, FetchError, SecretKeyError, WebhookError, WebhookSecretError
from video_pipelines.net import (
    AllowedHosts,
    certificate_error,
    open_pinned,
    redact_url,
    resolve_destination,
    shared_ssl_context,
)
from video_pipelines.net.retrying import parse_retry_after
from video_pipelines.telemetry.trace_context import parse_traceparent
from video_pipelines.telemetry.tracing import http_client_span
from video_pipelines.webhooks.outbox import AttemptOutcome, Delivery, DeliveryOutbox, RetrySchedule

_USER_AGENT = "video-pipelines"
DEFAULT_TIMEOUT: Final = 10.0
MAX_TIMEOUT: Final = 15.0
# Longer than any attempt can take (MAX_TIMEOUT), so a live sender never loses its claim.
LEASE_SECONDS: Final = 60.0
# Webhook signatures over the exact bytes sent: `X-Webhook-Signature` (hex HMAC-SHA256, as the seed SDK)
# and Standard Webhooks' headers, made by the `standardwebhooks` library itself. The key goes to the
# library as bytes: given a string, it base64-decodes it and silently drops characters outside the
# alphabet, so a mistyped `whsec_` secret would sign with another key.
WHSEC_PREFIX = "whsec_"


def standard_webhooks_key(secret: str) -> bytes:
    """The key of the `webhook-signature`: the secret's UTF-8 bytes, or the base64 after `whsec_`."""
    if not secret:
        raise WebhookSecretError("the webhook secret is empty; leave it out to send unsigned webhooks")
    if not secret.startswith(WHSEC_PREFIX):
        return secret.encode("utf-8")
    encoded = secret.removeprefix(WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            "the webhook secret starts with whsec_ but what follows is not base64 (A-Z a-z 0-9 + /); "
            "use the secret exactly as Standard Webhooks generated it, or a secret without that prefix"
        ) from None
    if not key:
        raise WebhookSecretError("the webhook secret whsec_ carries no key; give the whole whsec_<base64> secret")
    return key


def unsigned_headers(webhook_id: str, timestamp: int) -> dict[str, str]:
    """The headers of a webhook without a secret: its stable id and the time of this attempt."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp)}


def signature_headers(body: bytes, secret: str, *, webhook_id: str, timestamp: int) -> dict[str, str]:
    """The signature headers for `body` (the exact UTF-8 bytes sent) at `timestamp` (unix seconds)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookError(f"a webhook body must be UTF-8 (invalid byte at offset {exc.start})") from None
    key = standard_webhooks_key(secret)
    standard = Webhook(key).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), text)
    return {
        "X-Webhook-Signature": hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest(),
        **unsigned_headers(webhook_id, timestamp),
        "webhook-signature": standard,
    }


def _scrub(text: str, url: str) -> str:
    """`text` without the URL's query string, credentials or fragment (they may hold tokens)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return text
    for part in (parsed.query.decode("ascii", "replace"), parsed.userinfo.decode("ascii", "replace"), parsed.fragment):
        if part:
            text = text.replace(part, "<redacted>")
    return text


def _transport_error(exc: httpx.HTTPError, url: str, host: str) -> str:
    shown = redact_url(url)
    certificate = certificate_error(exc)
    if certificate is not None:
        return f"TLS certificate of {host} not accepted posting to {shown}: {certificate.verify_message or certificate}"
    return f"{type(exc).__name__} posting to {shown}: {_scrub(str(exc), url) or 'no detail'}"


def _timed(started: float, **fields: Any) -> AttemptOutcome:
    """An outcome lasting from `started` (time.monotonic) until now."""
    return AttemptOutcome(duration_ms=round((time.monotonic() - started) * 1000), **fields)


def send_once(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allowed: AllowedHosts,
    timeout: float = DEFAULT_TIMEOUT,
) -> AttemptOutcome:
    """POST exactly `body`; never raises for what the network does. `timeout` bounds the whole exchange."""
    if not timeout > 0:
        raise WebhookError(f"timeout must be > 0 seconds, got {timeout}")
    budget = min(timeout, MAX_TIMEOUT)
    ended = functools.partial(_timed, time.monotonic())
    shown = redact_url(url)
    try:
        destination = resolve_destination(url, allowed)
    except BlockedDestinationError as exc:
        return ended(refused=True, error=str(exc))
    except FetchError as exc:
        return ended(error=str(exc))
    request_headers = httpx.Headers({"User-Agent": _USER_AGENT})
    request_headers.update(headers)
    request_headers["Content-Type"] = "application/json"
    try:
        with open_pinned(
            destination,
            "POST",
            headers=request_headers,
            content=body,
            ssl_context=shared_ssl_context(),
            timeout=budget,
            total_timeout=budget,
        ) as response:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"))
    except httpx.TimeoutException:
        return ended(error=f"no answer from {shown} within {budget:g}s")
    except httpx.HTTPError as exc:
        return ended(error=_transport_error(exc, url, destination.host))
    except httpx.InvalidURL as exc:
        return ended(error=f"cannot build a request for {shown}: {_scrub(str(exc), url)}")
    redirect = f"{shown} answered HTTP {status}, a redirect; webhooks do not follow redirects"
    return ended(status_code=status, retry_after=retry_after, error=redirect if 300 <= status < 400 else None)


@dataclass(frozen=True)
class _Sender:
    """How `deliver_due` makes an attempt: where secrets and trace parents come from, what it may reach."""

    secret_for: Callable[[Delivery], str | None]
    allowed: AllowedHosts
    timeout: float
    trace_parent_for: Callable[[Delivery], str | None] | None

    def traced(self, delivery: Delivery) -> AttemptOutcome:
        """`attempt` in its own span, a child of the execution's span when `trace_parent_for` finds it."""
        try:
            parent = parse_traceparent(self.trace_parent_for(delivery)) if self.trace_parent_for else None
        except Exception:  # tracing never costs a delivery
            parent = None
        attributes: dict[str, str | int] = {
            "video_pipelines.execution_id": delivery.execution_id,
            "video_pipelines.webhook_id": delivery.webhook_id,
            "video_pipelines.event": delivery.event,
            "video_pipelines.attempt": delivery.attempts + 1,
        }
        if delivery.node_id:
            attributes["video_pipelines.node_id"] = delivery.node_id
        name = f"webhook {delivery.event}"
        with http_client_span(name, "POST", delivery.redacted_url, parent=parent, attributes=attributes) as span:
            outcome = self.attempt(delivery, span.headers)
            if outcome.status_code is not None:
                span.answered(outcome.status_code)
            if outcome.error is not None:
                span.failed(outcome.error)
        return outcome

    def attempt(self, delivery: Delivery, trace_headers: Mapping[str, str]) -> AttemptOutcome:
        """Sign `delivery` for this attempt (a fresh timestamp, its stable id) and send it."""
        started = time.monotonic()

        def failed(error: str) -> AttemptOutcome:
            return _timed(started, error=error)

        def misconfigured(error: str) -> AttemptOutcome:
            # The same lookup fails the same way until someone changes the configuration: retrying
            # for hours would only hide it. Redelivering after the fix sends it.
            fix = f"not retried: fix it, then `video-pipelines deliveries redeliver {delivery.webhook_id}`"
            return replace(failed(f"{error}; {fix}"), permanent=True)

        unreadable = f"the webhook secret could not be read ({delivery.secret_source})"
        try:
            secret = self.secret_for(delivery)
        except (WebhookSecretError, SecretKeyError) as exc:
            return misconfigured(f"{unreadable}: {exc}")
        except Exception as exc:  # the store's database, say: may pass, so retried
            return failed(f"{unreadable}: {type(exc).__name__}: {exc}")
        if secret is None and delivery.secret_source is not None:
            # A webhook recorded as signed never goes out unsigned.
            return misconfigured(f"{unreadable}: there is none")
        # The receiver checks the timestamp against its own clock: always the real time.
        timestamp = int(time.time())
        try:
            headers = (
                signature_headers(delivery.body, secret, webhook_id=delivery.webhook_id, timestamp=timestamp)
                if secret is not None
                else unsigned_headers(delivery.webhook_id, timestamp)
            )
        except WebhookError as exc:
            return misconfigured(f"the webhook cannot be signed: {exc}")
        headers = {**headers, **trace_headers}
        return send_once(delivery.url, delivery.body, headers, allowed=self.allowed, timeout=self.timeout)


def deliver_due(
    outbox: DeliveryOutbox,
    *,
    secret_for: Callable[[Delivery], str | None],
    allowed: AllowedHosts,
    schedule: RetrySchedule,
    now: datetime | None = None,
    limit: int = 20,
    timeout: float = DEFAULT_TIMEOUT,
    trace_parent_for: Callable[[Delivery], str | None] | None = None,
) -> list[tuple[Delivery, AttemptOutcome]]:
    """Attempt each due delivery (up to `limit`) once, claimed one at a time so senders share the work."""
    sender = _Sender(secret_for, allowed, timeout, trace_parent_for)
    results: list[tuple[Delivery, AttemptOutcome]] = []
    attempted: set[str] = set()
    while len(results) < limit:
        claimed = outbox.claim_due(now=now, limit=1, lease_seconds=LEASE_SECONDS, exclude=attempted)
        if not claimed:
            break
        delivery = claimed[0]
        attempted.add(delivery.webhook_id)
        outcome = sender.traced(delivery)
        results.append((outbox.record_attempt(delivery, outcome, schedule=schedule, now=now), outcome))
    return results
