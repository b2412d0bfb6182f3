"""The API's shapes as pydantic models (its OpenAPI schema), built from the typed values' wire form, so a
drift is a failing validation; unknown fields pass through."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from video_pipelines.executions import ExecutionStatus
from video_pipelines.plan.params import WholeNumber
from video_pipelines.vocabulary import ExecutionState, NodeState

# A date and a time, as RFC 3339 writes them (the offset may be left out: UTC). Pydantic alone would also take
# numbers as Unix times and a bare date, which a `date-time` parameter does not allow.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?")


def _date_time(value: object) -> object:
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("must be a date and time in ISO 8601, e.g. 2026-12-07T09:00:00Z (UTC without an offset)")
    if not isinstance(value, str | datetime):
        raise ValueError("must be a date and time in ISO 8601 (a string), e.g. 2026-12-07T09:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    # Every time is compared in UTC; one that UTC cannot hold (9999-12-31T23:59-01:00) is refused here, not later.
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("is out of range once in UTC") from None


DateTime = Annotated[datetime, BeforeValidator(_date_time), AfterValidator(_in_utc)]


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
    ui_url: str | None = Field(
        default=None,
        description="the run's page in the Dagster UI, when the API knows the UI",
        exclude_if=lambda v: v is None,
    )
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


class LogLineDocument(_Wire):
    """One line of an execution's log."""

    at: str = Field(description="when it was written (ISO 8601, UTC)")
    level: Literal["debug", "info", "warning", "error", "critical"]
    node: str | None = Field(description="the plan node whose step wrote it; null for the run's own lines")
    message: str


class LogPage(_Wire):
    """Lines of an execution's log after the `cursor` asked for, oldest first."""

    logs: list[LogLineDocument]
    cursor: str | None = Field(
        description="give it back as `cursor` to read on (null: the log is empty); an empty page means every "
        "line written so far was read"
    )


class CostGroup(_Wire):
    """The spend of one provider, operation or day."""

    key: str = Field(description="the provider, the operation, or the day (YYYY-MM-DD, UTC)")
    total_usd: float
    saved_usd: float
    nodes: int = Field(description="nodes with a video (computed or reused)")
    executions: int


class CostReport(_Wire):
    """What the caller's executions cost, and what reuse saved at list prices."""

    total_usd: float
    saved_usd: float
    group_by: Literal["provider", "operation", "day"]
    groups: list[CostGroup]


class CostSuggestion(_Wire):
    """A way to spend less, from the caller's own records, and what it would have saved."""

    kind: Literal["identicalRecompute", "paidFailures", "cheaperProvider", "fallbacksTaken", "neverFetched"]
    message: str
    estimated_saving_usd: float
    executions: list[str] = Field(description="the executions it is drawn from")


class BulkRetryRequest(BaseModel):
    """`POST /api/executions/retry`: which of the caller's executions to run again."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["failed", "canceled"] = "failed"
    since: DateTime | None = Field(
        default=None, description="only executions whose state changed then or later (ISO 8601; UTC without offset)"
    )
    limit: WholeNumber = Field(default=100, ge=1, le=100, description="at most this many, newest first")

    @field_validator("limit", mode="before")
    @classmethod
    def _whole_float(cls, value: object) -> object:
        # 61.0 is the whole number 61, as JSON Schema (and the plan's params) read it.
        return int(value) if isinstance(value, float) and value.is_integer() else value


class SkippedRetry(_Wire):
    execution_id: str
    reason: str


class BulkRetry(_Wire):
    """The executions retried (each pending until its new run starts), and those that could not be."""

    retried: list[str]
    skipped: list[SkippedRetry]


class Worker(_Wire):
    """A run worker of this deployment, as its last heartbeat described it."""

    name: str
    concurrency: int = Field(description="runs it takes at once")
    active: int = Field(description="runs it runs now")
    runs: list[str] = Field(description="the Dagster run ids of those runs")
    queues: list[str]
    last_seen: str = Field(description="its last heartbeat (ISO 8601, UTC)")


class QueuedRuns(_Wire):
    high: int
    normal: int
    low: int


class QueueDocument(_Wire):
    """What waits: submissions not yet launched, and runs in Dagster's run queue by priority."""

    pending_submissions: int
    queued_runs: QueuedRuns
