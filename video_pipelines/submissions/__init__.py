"""Submissions and the tables beside them: plans kept until a sensor launches them, API keys, attempts,
node results, outcomes. Plain Python: no Dagster import."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.lazy import lazy_exports

if TYPE_CHECKING:
    from video_pipelines.submissions.api_keys import ApiKeys as ApiKeys
    from video_pipelines.submissions.api_keys import check_tenant as check_tenant
    from video_pipelines.submissions.attempts import AttemptReason as AttemptReason
    from video_pipelines.submissions.attempts import AttemptState as AttemptState
    from video_pipelines.submissions.attempts import AttemptStore as AttemptStore
    from video_pipelines.submissions.attempts import ExecutionOutcomes as ExecutionOutcomes
    from video_pipelines.submissions.attempts import OutcomeTally as OutcomeTally
    from video_pipelines.submissions.attempts import RunAttempt as RunAttempt
    from video_pipelines.submissions.node_results import CachedNode as CachedNode
    from video_pipelines.submissions.node_results import NodeClaim as NodeClaim
    from video_pipelines.submissions.node_results import NodeOrigin as NodeOrigin
    from video_pipelines.submissions.node_results import NodeResultIndex as NodeResultIndex
    from video_pipelines.submissions.schema import DEFAULT_TENANT as DEFAULT_TENANT
    from video_pipelines.submissions.schema import SCHEMA_VERSION as SCHEMA_VERSION
    from video_pipelines.submissions.store import KEY_FILE_NAME as KEY_FILE_NAME
    from video_pipelines.submissions.store import SECRET_KEY_ENV as SECRET_KEY_ENV
    from video_pipelines.submissions.store import Submission as Submission
    from video_pipelines.submissions.store import SubmissionState as SubmissionState
    from video_pipelines.submissions.store import SubmissionStore as SubmissionStore
    from video_pipelines.submissions.store import execution_created_at as execution_created_at
    from video_pipelines.submissions.store import new_execution_id as new_execution_id
    from video_pipelines.submissions.waits import ProviderWait as ProviderWait
    from video_pipelines.submissions.waits import ProviderWaits as ProviderWaits
    from video_pipelines.submissions.waits import WaitState as WaitState

# Each module's names, the module imported at the first use of one: a `submit` opens the store only.
_EXPORTS = {
    "api_keys": ("ApiKeys", "check_tenant"),
    "attempts": ("AttemptReason", "AttemptState", "AttemptStore", "ExecutionOutcomes", "OutcomeTally", "RunAttempt"),
    "node_results": ("CachedNode", "NodeClaim", "NodeOrigin", "NodeResultIndex"),
    "schema": ("DEFAULT_TENANT", "SCHEMA_VERSION"),
    "store": (
        "KEY_FILE_NAME",
        "SECRET_KEY_ENV",
        "Submission",
        "SubmissionState",
        "SubmissionStore",
        "execution_created_at",
        "new_execution_id",
    ),
    "waits": ("ProviderWait", "ProviderWaits", "WaitState"),
}

if not TYPE_CHECKING:  # mypy reads the imports above: a name that does not exist stays an error
    __getattr__ = lazy_exports(__name__, _EXPORTS)
