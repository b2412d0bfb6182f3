"""Who is asking, and whose an execution is: the tenant of the key that submitted it; operators submit as
`DEFAULT_TENANT` and see every tenant. Apart from `tenancy` so that `admission` and `lifecycle` can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from video_pipelines.executions.records import RunRecords
from video_pipelines.submissions import DEFAULT_TENANT, SubmissionStore


@dataclass(frozen=True)
class Caller:
    """Who calls a door: an API key's tenant, or None for an operator (who sees every tenant)."""

    tenant: str | None

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def may_see(self, owner: str | None) -> bool:
        """Whether this caller may see an execution of tenant `owner` (None: no such execution)."""
        return owner is not None and (self.tenant is None or self.tenant == owner)


OPERATOR = Caller(None)


def execution_tenant(records: RunRecords | None, store: SubmissionStore | None, execution_id: str) -> str | None:
    """The tenant of `execution_id`; None when it does not exist (or, without `records`, has no submission)."""
    submission = store.get(execution_id) if store is not None else None
    if submission is not None:
        return submission.tenant
    if records is not None and records.find_run(execution_id) is not None:
        return DEFAULT_TENANT
    return None
