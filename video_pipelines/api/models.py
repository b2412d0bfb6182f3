"""The API's shapes as pydantic models (its OpenAPI schema), built from the typed values' wire form, so a
drift is a failing validation; unknown fields pass through."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from video_pipelines.executions import ExecutionStatus
from video_pipelines.vocabulary import ExecutionState, NodeState


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ExecutionAccepted(_Wire):
    """`POST /api/execute` answered 202: the execution is stored; the daemon will launch it."""

    execution_id: str = Field(examples=["exec_01JC6V3YH5Q1M2N8R4T7W9XZ0B"])


class Captions(_Wire):
    """An addSubtitles result's cues as sidecar files beside the video."""

    srt: str = Field(description="SubRip (.srt) file URL")
    vtt: str = Field(description="WebVTT (.vtt) file URL")


class Video(_Wire):
    """A video result: where to get it and what it is."""

    url: str
    duration: float
    width: int
    height: int
    aspect_ratio: str
    size_bytes: int
    sha256: str
    status: str
    # Absent, not null, on other results: the document stays what `video-pipelines status` prints.
    captions: Captions | None = Field(
        default=None, description="addSubtitles results: the cues as SRT and VTT", exclude_if=lambda v: v is None
    )
    provider: str | None = Field(
        default=None,
        description="nodes with fallbacks: the provider that made the video",
        exclude_if=lambda v: v is None,
    )
    fallback_from: list[str] | None = Field(
        default=None,
        description="nodes with fallbacks: the providers it moved on from, in order (empty: its own made it)",
        exclude_if=lambda v: v is None,
    )


class ProviderJob(_Wire):
    """The provider job a waiting node is parked on."""

    provider: str
    id: str
    since: str = Field(description="when the node parked on it (ISO 8601, UTC)")


class ProviderCallbackAnswer(_Wire):
    """A provider's verified call, taken."""

    job_id: str
    ended: bool
    execution_id: str | None = Field(description="the execution parked on the job (its continuation asked for)")


class NodeDocument(_Wire):
    """One plan node in the status document."""

    status: NodeState
    result: Video | None
    reused_from: str | None
    cost: float
    # Absent, not null, on nodes that do not wait.
    provider_job: ProviderJob | None = Field(
        default=None, description="waiting nodes: the provider job they wait on", exclude_if=lambda v: v is None
    )


class AttemptDocument(_Wire):
    """One run of an execution: its first, or one that resumed it (a lost worker) or retried it."""

    attempt: int = Field(ge=1)
    run_id: str
    status: ExecutionState
    reason: Literal["resume", "retry", "continue"] | None


class StatusDocument(_Wire):
    """The status document of `video-pipelines status`."""

    execution_id: str
    status: ExecutionState
    progress: int = Field(ge=0, le=100)
    total_jobs: int
    completed_jobs: int
    reused_jobs: int
    current_job: str | None
    result: Video | None
    error: str | None
    run_id: str | None
    cost: float
    saved_usd: float = Field(default=0.0, description="what reuse saved at list prices")
    trace_id: str | None
    worker: str | None = Field(default=None, description="the run worker that took the run: node name and pid")
    attempt: int = Field(default=0, ge=0, description="the number of the execution's newest run (0 before its first)")
    attempts: list[AttemptDocument] = Field(default_factory=list, description="every run of the execution")
    jobs: dict[str, NodeDocument]

    @classmethod
    def of(cls, status: ExecutionStatus) -> Self:
        return cls.model_validate(status.to_wire())


class NodeEvent(_Wire):
    """`event: node` of `/events`: a node's state changed (the other events carry the status document)."""

    execution_id: str
    node_id: str
    status: NodeState
    previous_status: NodeState | None = Field(description="null when the node was not seen before")
    result: Video | None
    reused_from: str | None


class ExecutionPage(_Wire):
    """One page of the caller's executions, newest first; `nextCursor` fetches the next (null after the last)."""

    executions: list[StatusDocument]
    next_cursor: str | None


class Attempt(_Wire):
    """One attempt to deliver a webhook: when, and the answer's status code or the error."""

    number: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(_Wire):
    """One webhook event of an execution and every attempt to deliver it."""

    webhook_id: str
    event: str
    node_id: str | None
    state: Literal["pending", "delivered", "failed"]
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None
    attempts: list[Attempt]


class DeliveryLog(_Wire):
    """Every webhook delivery of an execution."""

    deliveries: list[Delivery]


class Health(_Wire):
    """What `/health` checked; each is `ok` or `down`."""

    database: Literal["ok", "down"]
    daemon: Literal["ok", "down"]
    storage: Literal["ok", "down"]
    # Absent while every circuit is closed: a provider's outage never makes the deployment unhealthy.
    providers: dict[str, Literal["open", "half_open"]] | None = Field(
        default=None,
        description="providers whose circuit breaker is open (or half-open: one probe call let through)",
        exclude_if=lambda v: not v,
    )


class Problem(_Wire):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str


class PlanProblem(_Wire):
    """One problem of an invalid plan: the node (null for the plan as a whole), the field, what is wrong."""

    node: str | None
    field: str | None
    message: str


class InvalidPlan(Problem):
    """422: the plan was not stored; `errors` lists every problem, as `video-pipelines validate` does."""

    errors: list[PlanProblem]


class Unhealthy(Problem, Health):
    """503: what is down is `down`, and `detail` says why."""
