"""The errors video_pipelines raises.

Every error the package raises on purpose derives from `VideoPipelineError`, so a
caller can catch the whole family in one place. The hierarchy says what a caller
should do next:

    VideoPipelineError
    ├── PlanValidationError      the plan is wrong; fix it and submit again (never retried)
    ├── MediaError               an input or output is not usable media (never retried)
    │   └── FFmpegError          FFmpeg exited non-zero; carries the tail of its stderr
    ├── FetchError               a remote file could not be fetched
    │   ├── BlockedDestinationError   the URL resolves to a private/loopback address (never retried)
    │   └── TransientFetchError       timeout, connection error or 5xx: worth a retry
    ├── StorageError             artifact storage refused or failed
    │   └── TransientStorageError     worth a retry
    └── ProviderError            a generation/lip-sync provider failed or is not configured
        └── TransientProviderError    429, 5xx, timeouts: worth a retry

Dagster's `RetryPolicy` retries only the `Transient*` errors (see
`video_pipelines.orchestration`); everything else fails the step at once.
"""

from __future__ import annotations


class VideoPipelineError(Exception):
    """Base class of every error video_pipelines raises on purpose."""


class TransientError(VideoPipelineError):
    """Mixin-style marker: the same call may succeed if tried again later."""


class PlanValidationError(VideoPipelineError):
    """A plan that cannot run; `problems` lists every problem found, each naming the node and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid plan")


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


class TransientProviderError(ProviderError, TransientError):
    """A provider failure that may pass (429, 5xx, timeouts)."""
