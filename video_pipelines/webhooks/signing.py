"""Webhook signatures (README "Webhooks"), over the exact bytes that are sent.

- `X-Webhook-Signature`: the lowercase hex HMAC-SHA256 of the raw body, keyed with the secret's
  UTF-8 bytes (what the seed SDK's `createHmac("sha256", secret)` does).
- `webhook-signature` with `webhook-id` and `webhook-timestamp` (Standard Webhooks), made by the
  `standardwebhooks` library itself so sender and receivers share one implementation. Its key is
  the secret's UTF-8 bytes, or for a secret `whsec_<base64>` the base64 it carries; receivers
  verify with `Webhook(secret.encode())`, or `Webhook("whsec_...")` for such a secret.

The key is always given to the library as bytes: given a string, it base64-decodes it and
silently drops characters outside the alphabet, so a mistyped `whsec_` secret would sign with
another key; here a `whsec_` secret must be valid base64, else `WebhookSecretError`. The
library signs text: strict UTF-8 decoding and encoding are inverse, so the signature covers
exactly the bytes sent; a body that is not UTF-8 is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime

from standardwebhooks import Webhook

from video_pipelines.errors import WebhookError, WebhookSecretError

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
    """`X-Webhook-Signature`, `webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`.

    `timestamp` is unix seconds (receivers reject one far from their clock); `body` must be the
    exact bytes sent, UTF-8.
    """
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
