"""Providers calling us back when a job ends (`POST /api/providers/{provider}/webhook`): who may, and what they say.

Replicate signs its webhooks the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature; HMAC-SHA256
with the account's signing secret, `GET /v1/webhooks/default/secret`), which the `standardwebhooks` library checks,
timestamps older than five minutes included. A call we cannot verify changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from video_pipelines.errors import VideoPipelineError
from video_pipelines.providers.replicate import ENDED_STATUSES

REPLICATE_SIGNING_SECRET_ENV = "REPLICATE_WEBHOOK_SIGNING_SECRET"  # noqa: S105 (a variable's name)


class UnknownCaller(VideoPipelineError):
    """No provider of that name calls back here."""


class CallbackRefused(VideoPipelineError):
    """The call is not the provider's (no, or a wrong, signature), or it is not a job's news."""


@dataclass(frozen=True)
class JobNews:
    """What a provider's call says: which job, and whether it ended."""

    provider: str
    job_id: str
    ended: bool


def _replicate(body: bytes, headers: Mapping[str, str]) -> JobNews:
    secret = os.environ.get(REPLICATE_SIGNING_SECRET_ENV, "").strip()
    if not secret:
        raise CallbackRefused(
            f"replicate webhooks cannot be verified here: set {REPLICATE_SIGNING_SECRET_ENV} for the API "
            "(Replicate's signing secret, from GET /v1/webhooks/default/secret)"
        )
    try:
        hook = Webhook(secret)
    except (ValueError, RuntimeError):
        raise CallbackRefused(f"{REPLICATE_SIGNING_SECRET_ENV} is not a signing secret (whsec_<base64>)") from None
    try:
        prediction = hook.verify(body, dict(headers))
    except WebhookVerificationError as exc:
        raise CallbackRefused(f"replicate webhook refused: {exc}") from None
    except ValueError:
        raise CallbackRefused("replicate webhook refused: its body is not JSON") from None
    job_id = prediction.get("id") if isinstance(prediction, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise CallbackRefused("replicate webhook refused: its body is not a prediction (no id)")
    return JobNews("replicate", job_id, prediction.get("status") in ENDED_STATUSES)


_VERIFIERS = {"replicate": _replicate}


def job_news(provider: str, body: bytes, headers: Mapping[str, str]) -> JobNews:
    """The verified news of a provider's webhook; UnknownCaller or CallbackRefused otherwise."""
    verify = _VERIFIERS.get(provider)
    if verify is None:
        raise UnknownCaller(f"no webhooks are taken from {provider!r} (providers that call back: replicate)")
    return verify(body, {name.lower(): value for name, value in headers.items()})
