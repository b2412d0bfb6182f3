"""Run config of `execute_plan`: the plan object at `ops.plan.config`, in the SDK's camelCase wire names.

Enums make Dagster's editor refuse typos; the webhook secret is only a variable name (`secretEnv`), so
it never reaches run storage.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import dagster as dg
from pydantic import Field

from video_pipelines.plan import Plan

# Dagster's config enums accept member *names*, so these name each member by its wire spelling (a test
# holds them to `Operation.parse` and `Priority`).


class OperationName(StrEnum):
    """A plan node's `type`: an operation in any spelling `Operation.parse` accepts."""

    generateVideo = "generateVideo"
    generate_video = "generate_video"
    # The seed SDK's JSON payload examples say "generate" for generateVideo.
    generate = "generate"
    merge = "merge"
    lipSync = "lipSync"
    lip_sync = "lip_sync"
    addSubtitles = "addSubtitles"
    add_subtitles = "add_subtitles"
    reframe = "reframe"


class PriorityName(StrEnum):
    """A plan's `priority`: higher runs first when runs queue."""

    high = "high"
    normal = "normal"
    low = "low"


class WebhookConfig(dg.Config):
    """Where to POST when the execution ends (and on `events`). Secrets go by env var name, never in plain text."""

    url: str = Field(description="http(s) URL that receives the signed webhook")
    secretEnv: str | None = Field(
        default=None,
        description="Name of the environment variable holding the signing secret "
        "(a plaintext 'secret' is refused: it would be stored in run config)",
    )
    events: list[str] | None = Field(
        default=None, description="Events to POST besides the end's: execution.started, node.completed, node.failed"
    )


class PlanNodeConfig(dg.Config):
    """One job of the plan, as in the SDK's wire format."""

    id: str
    type: OperationName | None = Field(default=None, description="generateVideo, merge, lipSync, addSubtitles, reframe")
    operation: OperationName | None = Field(default=None, description="older clients' name for 'type'")
    params: dict[str, Any] = Field(default_factory=dict)
    dependsOn: list[str] = Field(default_factory=list)
    output: str | None = None
    cache: bool | None = Field(default=None, description="false: compute anew, never reuse an earlier result")


class PlanConfig(dg.Config):
    """The execution plan to run (the SDK's JSON, minus any plaintext webhook secret)."""

    # Not `min_length=1`: Dagster's editor would accept `[]` anyway, then pydantic would fail with a stack trace.
    jobs: list[PlanNodeConfig] = Field(description="the plan's jobs: at least one")
    baseExecutionId: str | None = None
    webhook: WebhookConfig | None = None
    priority: PriorityName | None = Field(default=None, description="high, normal (the default) or low")
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
        wire: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        # A node's keys in the SDK's order (the config lists `type` first, for the Launchpad).
        wire["jobs"] = [
            {"id": n.pop("id"), "params": n.pop("params"), "dependsOn": n.pop("dependsOn"), **n} for n in wire["jobs"]
        ]
        return wire

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanConfig:
        return cls.model_validate(plan.to_wire(include_secret=False))


# The Launchpad's default: runs as it is, no provider key, no cost (two local clips crossfaded).
EXAMPLE_PLAN: dict[str, Any] = {
    "jobs": [
        {
            "id": "clip1",
            "type": "generateVideo",
            "params": {"prompt": "A lighthouse at dawn", "duration": 2, "aspectRatio": "16:9", "provider": "local"},
        },
        {
            "id": "clip2",
            "type": "generateVideo",
            "params": {"prompt": "Waves on the rocks", "duration": 2, "aspectRatio": "16:9", "provider": "local"},
        },
        {
            "id": "merged",
            "type": "merge",
            "params": {"transition": "crossfade", "transitionDuration": 0.5},
            "dependsOn": ["clip1", "clip2"],
        },
    ]
}
