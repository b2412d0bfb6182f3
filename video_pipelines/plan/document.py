"""The plan's wire format as a JSON Schema, built from the models that validate it so it cannot drift.

The graph (dependencies, cycles, `{{ref}}` targets) is checked in `parse_plan`, which also takes older
spellings (`operation`, snake_case, the seed SDK's `generate`, `null` for absent) the schema does not show.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from video_pipelines.plan.params import (
    AddSubtitlesParams,
    GenerateVideoParams,
    LipSyncParams,
    MergeParams,
    Operation,
    ReframeParams,
)
from video_pipelines.vocabulary import SUBSCRIBABLE_EVENTS, Priority

# fullmatch, not match: `$` would let a trailing newline through.
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HTTP_URL = "^https?://"

NodeId = Annotated[str, Field(pattern=f"^{NODE_ID_PATTERN.pattern}$")]
EventName = Annotated[str, Field(json_schema_extra={"enum": [event.value for event in SUBSCRIBABLE_EVENTS]})]
_UNIQUE: dict[str, Any] = {"uniqueItems": True}


EXAMPLE: dict[str, Any] = {
    "jobs": [
        {"id": "job1", "type": "generateVideo", "params": {"prompt": "Scene 1", "duration": 3}},
        {"id": "job2", "type": "generateVideo", "params": {"prompt": "Scene 2", "duration": 3}},
        {"id": "job3", "type": "merge", "params": {"transition": "crossfade"}, "dependsOn": ["job1", "job2"]},
    ],
    "webhook": {"url": "https://example.com/hooks/video", "secret": "a shared secret"},
    "priority": "normal",
}


class _Document(BaseModel):
    # Built at their first use (the API's schema, its request bodies): parsing a plan reads only their field names.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)


class WebhookDocument(_Document):
    """Where to POST the signed events of the execution; `secret` and `secretEnv` do not go together."""

    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["secret", "secretEnv"],
                "properties": {"secret": {"type": "string"}, "secretEnv": {"type": "string"}},
            }
        }
    )

    url: str = Field(pattern=HTTP_URL, examples=["https://example.com/hooks/video"])
    secret: str | None = Field(
        default=None, min_length=1, description="signs every delivery; stored encrypted, never shown"
    )
    secret_env: str | None = Field(
        default=None,
        pattern=f"^{ENV_NAME_PATTERN.pattern}$",
        description="the name of the environment variable (of the daemon and workers) that holds the secret",
    )
    events: Annotated[list[EventName], Field(json_schema_extra=_UNIQUE)] | None = Field(
        default=None, description="events sent besides the end's, which is always sent"
    )


class _Job(_Document):
    id: NodeId
    depends_on: Annotated[list[NodeId], Field(json_schema_extra=_UNIQUE)] | None = Field(
        default=None,
        description="the jobs whose videos are this job's inputs, in order (generateVideo: they only go first)",
    )
    output: str | None = Field(
        default=None, pattern=f"^\\${NODE_ID_PATTERN.pattern}$", description="'$' + the job's id (informational)"
    )
    cache: bool | None = Field(
        default=None, description="false: compute anew, never reuse an earlier result of its lineage"
    )


class GenerateVideoJob(_Job):
    """Renders a clip from a prompt; takes no input video."""

    type: Literal[Operation.GENERATE_VIDEO]
    params: GenerateVideoParams


class MergeJob(_Job):
    """Concatenates its input videos, in `dependsOn` order."""

    type: Literal[Operation.MERGE]
    params: MergeParams | None = None


class LipSyncJob(_Job):
    """Puts a new voice on its one input video."""

    type: Literal[Operation.LIP_SYNC]
    params: LipSyncParams


class AddSubtitlesJob(_Job):
    """Subtitles its one input video."""

    type: Literal[Operation.ADD_SUBTITLES]
    params: AddSubtitlesParams


class ReframeJob(_Job):
    """Brings its one input video to another aspect ratio."""

    type: Literal[Operation.REFRAME]
    params: ReframeParams


Job = Annotated[GenerateVideoJob | MergeJob | LipSyncJob | AddSubtitlesJob | ReframeJob, Field(discriminator="type")]


class PlanDocument(_Document):
    """An execution plan (docs/plans-and-operations.md): its jobs, and how the execution runs and reports."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    jobs: list[Job] = Field(min_length=1)
    base_execution_id: str | None = Field(
        default=None, min_length=1, description="an earlier execution whose results this variant reuses"
    )
    webhook: WebhookDocument | None = None
    priority: Priority | None = Field(default=None, description="normal when absent")
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="refused at admission, and before a paid node, when its spend would exceed this"
    )
    timeout_seconds: int | None = Field(default=None, gt=0, description="the whole execution's deadline, in seconds")
    cache: bool | None = Field(
        default=None, description="false: no node reuses an earlier execution's result of the same lineage"
    )


def wire_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(field.alias or name for name, field in model.model_fields.items())


PLAN_FIELDS = frozenset(wire_names(PlanDocument))
# Older clients name a job's operation `operation`.
JOB_FIELDS = frozenset({*wire_names(GenerateVideoJob), "operation"})
WEBHOOK_FIELDS = wire_names(WebhookDocument)
