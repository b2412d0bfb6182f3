"""Submissions and the tables beside them: plans kept until a sensor launches them, API keys, attempts,
node results, outcomes. Plain Python: no Dagster import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

# Each name's module, imported at the first use of one of its names: a `submit` opens the store only.
_HOMES = {
    "ApiKeys": "api_keys",
    "check_tenant": "api_keys",
    "AttemptReason": "attempts",
    "AttemptState": "attempts",
    "AttemptStore": "attempts",
    "ExecutionOutcomes": "attempts",
    "OutcomeTally": "attempts",
    "RunAttempt": "attempts",
    "CachedNode": "node_results",
    "NodeClaim": "node_results",
    "NodeResultIndex": "node_results",
    "DEFAULT_TENANT": "schema",
    "SCHEMA_VERSION": "schema",
    "KEY_FILE_NAME": "store",
    "SECRET_KEY_ENV": "store",
    "Submission": "store",
    "SubmissionState": "store",
    "SubmissionStore": "store",
    "execution_created_at": "store",
    "new_execution_id": "store",
    "ProviderWait": "waits",
    "ProviderWaits": "waits",
    "WaitState": "waits",
}

if not TYPE_CHECKING:  # mypy reads the imports above; a typo stays an error

    def __getattr__(name: str) -> object:
        if name not in _HOMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
