"""What a submitter sets beside a plan (`SubmitOptions`), and how it wins over the plan's own fields.

Every door that takes a plan with `--base`, `--webhook-url`, `--webhook-secret`, `--priority`
or `--idempotency-key` (the client, the HTTP client, the store) carries them as one
`SubmitOptions` and merges them here, so the doors cannot come to disagree on which value wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from video_pipelines.plan.model import Plan


@dataclass(frozen=True)
class SubmitOptions:
    """The submitter's overrides; None and the empty string both mean "not given" (the plan's field stays).

    The webhook comes in two parts because either may come alone: a secret given without a URL
    signs the plan's own `webhook.url`. The idempotency key is the request's, never the plan's.
    """

    base_execution_id: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    priority: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, plan: Plan, idempotency_key: str | None = None) -> SubmitOptions:
        """The options a parsed plan stands for: its base, its typed webhook and its priority."""
        hook = plan.webhook
        return cls(
            base_execution_id=plan.base_execution_id,
            webhook_url=hook.url if hook else None,
            webhook_secret=hook.secret if hook else None,
            priority=plan.priority.value,
            idempotency_key=idempotency_key,
        )

    def apply(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """The wire plan with each override that is given in place of the plan's own field.

        A given `webhook_url` or `webhook_secret` goes into the plan's `webhook` object (created
        when the plan has none or has something that is not an object); a given secret replaces
        `webhook.secret` and drops `webhook.secretEnv`, since a plan names one secret. Nothing is
        validated here. `plan` is not modified: the result is a new dict (and a new `webhook`).
        """
        wire = dict(plan)
        if self.base_execution_id:
            wire["baseExecutionId"] = self.base_execution_id
        if self.priority:
            wire["priority"] = self.priority
        if self.webhook_url or self.webhook_secret:
            own = wire.get("webhook")
            hook = dict(own) if isinstance(own, Mapping) else {}
            if self.webhook_url:
                hook["url"] = self.webhook_url
            if self.webhook_secret:
                hook["secret"] = self.webhook_secret
                hook.pop("secretEnv", None)
            wire["webhook"] = hook
        return wire


NO_OPTIONS = SubmitOptions()
