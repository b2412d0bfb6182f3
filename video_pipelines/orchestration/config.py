"""Run config of `execute_plan`: the plan object at `ops.plan.config` (SPEC section 4).

Field names are the SDK's camelCase wire names so that a plan pastes into the launchpad
as it is. The webhook secret is given by environment variable name (`secretEnv`): a
plaintext `secret` is not a field, so Dagster refuses such run config before the run is
created and the secret never reaches run storage.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from video_pipelines.plan import Plan


class WebhookConfig(dg.Config):
    """Where to POST when the execution ends (and on `events`). Secrets go by env var name, never in plain text."""

    url: str = Field(description="http(s) URL that receives the signed webhook")
    secretEnv: str | None = Field(
        default=None,
        description="Name of the environment variable holding the signing secret "
        "(a plaintext 'secret' is refused: it would be stored in run config)",
    )
    events: list[str] | None = Field(
        default=None,
        description="Events to POST besides the end's: execution.started, node.completed, node.failed",
    )


class PlanNodeConfig(dg.Config):
    """One job of the plan, as in the SDK's wire format."""

    id: str
    type: str | None = Field(default=None, description="generateVideo, merge, lipSync, addSubtitles, reframe")
    operation: str | None = Field(default=None, description="older clients' name for 'type'")
    params: dict[str, Any] = Field(default_factory=dict)
    dependsOn: list[str] = Field(default_factory=list)
    output: str | None = None
    cache: bool | None = Field(default=None, description="false: compute anew, never reuse an earlier result")


class PlanConfig(dg.Config):
    """The execution plan to run (the SDK's JSON, minus any plaintext webhook secret)."""

    jobs: list[PlanNodeConfig]
    baseExecutionId: str | None = None
    webhook: WebhookConfig | None = None
    priority: str | None = None
    maxCostUsd: float | None = Field(
        default=None, description="spend cap in USD: refused over the estimate, a paid node fails past it"
    )
    timeoutSeconds: int | None = Field(
        default=None,
        description="deadline of the whole execution; set the run tag dagster/max_runtime to the same value "
        "when launching from the UI (the submission sensor sets it)",
    )
    cache: bool | None = Field(
        default=None, description="false: no node reuses an earlier execution's result of the same lineage"
    )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"jobs": [_node_wire(node) for node in self.jobs]}
        if self.baseExecutionId is not None:
            wire["baseExecutionId"] = self.baseExecutionId
        if self.webhook is not None:
            wire["webhook"] = {"url": self.webhook.url}
            if self.webhook.secretEnv is not None:
                wire["webhook"]["secretEnv"] = self.webhook.secretEnv
            if self.webhook.events is not None:
                wire["webhook"]["events"] = list(self.webhook.events)
        if self.priority is not None:
            wire["priority"] = self.priority
        if self.maxCostUsd is not None:
            wire["maxCostUsd"] = self.maxCostUsd
        if self.timeoutSeconds is not None:
            wire["timeoutSeconds"] = self.timeoutSeconds
        if self.cache is not None:
            wire["cache"] = self.cache
        return wire

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanConfig:
        """Run config for `plan`; the webhook secret stays out (it is looked up elsewhere)."""
        return cls.model_validate(plan.to_wire(include_secret=False))


def _node_wire(node: PlanNodeConfig) -> dict[str, Any]:
    wire: dict[str, Any] = {"id": node.id, "params": node.params, "dependsOn": node.dependsOn}
    if node.type is not None:
        wire["type"] = node.type
    if node.operation is not None:
        wire["operation"] = node.operation
    if node.output is not None:
        wire["output"] = node.output
    if node.cache is not None:
        wire["cache"] = node.cache
    return wire
