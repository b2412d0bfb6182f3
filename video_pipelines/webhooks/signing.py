"""Webhook signatures over the exact bytes sent: `X-Webhook-Signature` (hex HMAC-SHA256, as the seed SDK)
and Standard Webhooks' headers, made by the `standardwebhooks` library itself.

The key goes to the library as bytes: given a string, it base64-decodes it and silently drops
characters outside the alphabet, so a mistyped `whsec_` secret would sign with another key.
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
