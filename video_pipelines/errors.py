"""The errors video_pipelines raises on purpose. The node step retries `TransientError`s itself: an op
`RetryPolicy` would restart a canceled step, and `RetryRequested` queues it behind its dependents."""

from __future__ import annotations


class VideoPipelineError(Exception):
    """Base class of every error video_pipelines raises on purpose."""


class TransientError(VideoPipelineError):
    """Mixin-style marker: the same call may succeed if tried again later."""


class UsageError(VideoPipelineError):
    """A door was called wrong (an unreadable plan file, a missing option); the message says what to fix."""


class PlanValidationError(VideoPipelineError):
    """A plan that cannot run; `problems` lists every problem found, each naming the node and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid plan")


class ExecutionError(VideoPipelineError):
    """An execution that cannot be found or used as asked."""


class ExecutionConflict(ExecutionError):
    """The execution's state refuses the call (a completed one canceled, a running one retried): HTTP 409, exit 1."""


class SpendCapExceeded(ExecutionError):
    """Starting a paid node would take its execution over the plan's `maxCostUsd`; nothing was started."""


class ExecutionNotFound(ExecutionError):
    """No submission and no run carries this execution id."""


class MediaError(VideoPipelineError):
    """Media that FFmpeg cannot use, or a result that is not what was asked for."""


class FFmpegError(MediaError):
    """FFmpeg exited with an error; the message carries the useful tail of its stderr."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        detail = f"\n{stderr_tail}" if stderr_tail else ""
        super().__init__(f"{message}{detail}")


class FetchError(VideoPipelineError):
    """A remote file could not be fetched."""


class BlockedDestinationError(FetchError):
    """The URL resolves to a private, loopback, link-local or metadata address that is not allowed."""


class TransientFetchError(FetchError, TransientError):
    """A fetch that failed for a reason that may pass (timeout, connection error, 5xx)."""


class StorageError(VideoPipelineError):
    """Artifact storage refused or failed an operation."""


class TransientStorageError(StorageError, TransientError):
    """A storage failure that may pass (throttling, 5xx, connection errors)."""


class ProviderError(VideoPipelineError):
    """A provider failed the job or is not configured."""


class ProviderHttpError(ProviderError):
    """The provider refused a request (a 4xx other than 429); never worth a retry."""

    def __init__(self, message: str, *, status_code: int, provider_message: str) -> None:
        self.status_code = status_code
        self.provider_message = provider_message
        super().__init__(message)


class JobFailed(ProviderError):
    """The provider job ended without a usable result (failed, canceled, no output): nothing to cancel."""


class TransientProviderError(ProviderError, TransientError):
    """A provider failure that may pass (429, 5xx, timeouts)."""


class ProviderUnavailable(ProviderError):
    """The provider's circuit is open and the node has a fallback: it moves on without calling it."""


class SubmissionStoreError(VideoPipelineError):
    """The submission store refused an input (bad priority, a secret without a URL) or cannot use its database."""


class SecretKeyError(SubmissionStoreError):
    """The key that encrypts webhook secrets is missing, malformed or not the one a secret was encrypted with."""


class IdempotencyKeyReused(SubmissionStoreError):
    """An idempotency key its tenant used before for another request (HTTP: 422 `IDEMPOTENCY_KEY_REUSED`)."""


IDEMPOTENCY_KEY_REUSED = "tag:video-pipelines,2025:idempotency-key-reused"


class WebhookError(VideoPipelineError):
    """A webhook that cannot be built, stored or signed as asked; the message says what to fix."""


class WebhookSecretError(WebhookError):
    """A webhook secret that cannot sign or cannot be read at send time; the message never contains it."""
