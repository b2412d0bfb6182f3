"""The errors of the webhook core.

    VideoPipelineError
    └── WebhookError              a webhook cannot be built, stored or signed as asked
        └── WebhookSecretError    the secret cannot sign (empty, or `whsec_` without valid base64)

A failed delivery is not an error: it is an attempt recorded in the outbox (`AttemptOutcome`).
"""

from __future__ import annotations

from video_pipelines.errors import VideoPipelineError


class WebhookError(VideoPipelineError):
    """A webhook that cannot be built, stored or signed as asked; the message says what to fix."""


class WebhookSecretError(WebhookError):
    """A webhook secret that cannot sign; the message never contains the secret."""
