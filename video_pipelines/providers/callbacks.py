"""Providers calling us back when a job ends (`POST /api/providers/{provider}/webhook`): who may, and what they say.

Replicate signs its webhooks the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature; HMAC-SHA256
with the account's signing secret, `GET /v1/webhooks/default/secret`), which the `standardwebhooks` library checks,
timestamps older than five minutes included. fal signs its with ED25519 and the keys it publishes (`fal_webhooks`);
its body names the request, and the `app` query parameter we gave the webhook URL names the app the job id carries
(`fal.FalProvider`). A call we cannot verify changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from video_pipelines.errors import VideoPipelineError
from video_pipelines.providers.fal import WEBHOOK_APP_PARAMETER, fal_job_id, is_app_id
from video_pipelines.providers.fal_webhooks import FalKeys, FalSignatureError, verify_fal
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


def _replicate(body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> JobNews:
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


# fal's keys, fetched by the first fal webhook this process takes and kept across calls.
FAL_KEYS = FalKeys()


def _fal(body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> JobNews:
    try:
        request_id = verify_fal(body, headers, FAL_KEYS)
    except FalSignatureError as exc:
        raise CallbackRefused(f"fal webhook refused: {exc}") from None
    try:
        result = json.loads(body)
    except ValueError:
        raise CallbackRefused("fal webhook refused: its body is not JSON") from None
    if not isinstance(result, dict) or result.get("request_id") != request_id:
        raise CallbackRefused("fal webhook refused: its body is not the result of the request its headers name")
    app = query.get(WEBHOOK_APP_PARAMETER, "")
    # fal calls back once a request is done, whatever its status (OK or ERROR): the continuation reads which.
    # Without an app (not a webhook URL of ours) the id matches no wait, and the call changes nothing. The query is
    # not signed, but a request id is fal's alone: under another app it names no job of ours.
    return JobNews("fal", fal_job_id(app, request_id) if is_app_id(app) else request_id, ended=True)


_VERIFIERS: dict[str, Callable[[bytes, Mapping[str, str], Mapping[str, str]], JobNews]] = {
    "replicate": _replicate,
    "fal": _fal,
}


def job_news(provider: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> JobNews:
    """The verified news of a provider's webhook (`query`: its URL's parameters); UnknownCaller or CallbackRefused."""
    verify = _VERIFIERS.get(provider)
    if verify is None:
        raise UnknownCaller(
            f"no webhooks are taken from {provider!r} (providers that call back: {', '.join(_VERIFIERS)})"
        )
    return verify(body, {name.lower(): value for name, value in headers.items()}, query or {})
