"""A submitter's overrides of a plan's own fields, applied to its wire form in one place.

Every door that takes a plan with `--base`, `--webhook-url`, `--webhook-secret` or
`--priority` (or the same keyword arguments) merges them here, so the doors cannot come to
disagree on which value wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def apply_overrides(
    plan: Mapping[str, Any],
    *,
    base_execution_id: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    priority: str | None = None,
) -> dict[str, Any]:
    """The wire plan with each override that is given in place of the plan's own field.

    None and the empty string both mean "not given": the plan's field stays. A given
    `webhook_url` or `webhook_secret` goes into the plan's `webhook` object (created when the
    plan has none or has something that is not an object); a given secret replaces
    `webhook.secret` and drops `webhook.secretEnv`, since a plan names one secret. Nothing is
    validated here. `plan` is not modified; the result is a new top-level dict with a new
    `webhook` dict when one was overridden, sharing every other value with `plan`.
    """
    wire = dict(plan)
    if base_execution_id:
        wire["baseExecutionId"] = base_execution_id
    if priority:
        wire["priority"] = priority
    if webhook_url or webhook_secret:
        own = wire.get("webhook")
        hook = dict(own) if isinstance(own, Mapping) else {}
        if webhook_url:
            hook["url"] = webhook_url
        if webhook_secret:
            hook["secret"] = webhook_secret
            hook.pop("secretEnv", None)
        wire["webhook"] = hook
    return wire
