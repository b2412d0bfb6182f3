"""Who is asking, and whose an execution is: the two facts every tenancy rule is made of.

An execution belongs to the tenant of the API key that submitted it (the `tenant` of its
submission). Operators (the local CLI, the Python client without an API URL, Dagster's own
doors) submit as `DEFAULT_TENANT` and see every tenant; a run launched directly through
Dagster has no submission and belongs to `DEFAULT_TENANT`.

Kept apart from `tenancy` (the life-cycle calls scoped to a caller) so that `admission` and
`lifecycle`, which `tenancy` builds on, can use these facts too.
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
