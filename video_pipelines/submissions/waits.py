"""Provider jobs that parked nodes wait on: one row per job, so a provider's webhook or the poller finds its node.

A node whose lineage another execution computes, parked on its provider job, parks too: on a wait of the
pseudo-provider `lineage` (`SAME_LINEAGE`), one per follower, which ends when that result is recorded or its
holder no longer waits (`LineageFollows`); a cancel of the follower leaves the holder's job alone.

    waiting ──the provider says it ended──> finished ──its continuation took it──> collected
       └──── canceling (its execution ended: canceled, deadline, failed) ──the provider's cancel──> canceled

Each move is one conditional UPDATE, so of a webhook and the poller racing, one wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import sqlalchemy as sa

from video_pipelines.errors import UsageError
from video_pipelines.providers.base import provider_webhook_url
from video_pipelines.submissions.node_results import NodeResultIndex
from video_pipelines.submissions.rows import Rows, moment, record
from video_pipelines.submissions.schema import provider_waits
from video_pipelines.submissions.store import SubmissionStore

_W = provider_waits.c

POLL_SECONDS_ENV = "VIDEO_PIPELINES_PROVIDER_POLL_SECONDS"
# Without a public URL the poller is how a waiting job is found finished; with one, providers call back and
# the poller is only the safety net for a webhook that never came.
DEFAULT_POLL_SECONDS = 5.0
DEFAULT_POLL_SECONDS_WITH_WEBHOOKS = 60.0
# The pseudo-provider of a node that waits for another execution's parked node of the same lineage.
SAME_LINEAGE: Final = "lineage"
# A follower's check is two primary-key reads in our own database, no provider call: every poller tick.
FOLLOW_POLL_SECONDS: Final = 1.0


def poll_seconds(provider: str) -> float:
    """How often a waiting job of `provider` is checked by the poller."""
    if provider == SAME_LINEAGE:
        return FOLLOW_POLL_SECONDS
    value = os.environ.get(POLL_SECONDS_ENV, "").strip()
    if not value:
        has_webhooks = provider_webhook_url(provider) is not None
        return DEFAULT_POLL_SECONDS_WITH_WEBHOOKS if has_webhooks else DEFAULT_POLL_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 3600:
        raise UsageError(f"{POLL_SECONDS_ENV} must be a number of seconds from 0.1 to 3600; got {value!r}")
    return seconds


class WaitState(StrEnum):
    WAITING = "waiting"
    FINISHED = "finished"  # the provider says the job ended: a continuation collects it
    COLLECTED = "collected"
    CANCELING = "canceling"  # its execution ended without it: the provider's cancel is due
    CANCELED = "canceled"


_OPEN: Final = (WaitState.WAITING.value, WaitState.FINISHED.value)
_NOT_ENDED: Final = (*_OPEN, WaitState.CANCELING.value)


@dataclass(frozen=True)
class ProviderWait:
    provider: str
    job_id: str
    execution_id: str
    node_id: str
    run_id: str  # the run that parked last
    state: WaitState
    since: datetime
    next_check_at: datetime
    updated_at: datetime

    @property
    def label(self) -> str:
        return f"{self.provider} {self.job_id}"


def _wait(row: sa.RowMapping) -> ProviderWait:
    return record(ProviderWait, row, state=WaitState(row["state"]))


class ProviderWaits:
    """The provider jobs parked nodes wait on, on the store's engine; thread-safe, processes may share it."""

    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def park(
        self, provider: str, job_id: str, *, execution_id: str, node_id: str, run_id: str, check_in: float
    ) -> ProviderWait:
        """Record that `run_id` parked on the job (again, when a continuation found it still running)."""
        now = moment(None)
        values = {
            "run_id": run_id,
            "state": WaitState.WAITING.value,  # a webhook that came before the run looked again: the poller's
            "next_check_at": now + timedelta(seconds=check_in),
            "updated_at": now,
        }
        # A follow is the same row again whenever its node parks again (a continuation found the lineage still
        # parked, a retry after a cancel): it holds no job of its own that an earlier end could have spent.
        reopens = tuple(state.value for state in WaitState) if provider == SAME_LINEAGE else _OPEN
        again = provider_waits.update().where(_W.provider == provider, _W.job_id == job_id, _W.state.in_(reopens))
        if self._rows.changed(again.values(values)) == 0:
            new = {**values, "provider": provider, "job_id": job_id, "execution_id": execution_id}
            new.update(node_id=node_id, since=now)
            with self._rows.engine.begin() as connection:
                connection.execute(provider_waits.insert().values(new))
        found = self.get(provider, job_id)
        assert found is not None  # written just now; rows are never deleted
        return found

    def get(self, provider: str, job_id: str) -> ProviderWait | None:
        return self._rows.first(sa.select(provider_waits).where(_W.provider == provider, _W.job_id == job_id), _wait)

    def of_execution(self, execution_id: str) -> list[ProviderWait]:
        """The execution's waits not ended yet (waiting, finished, canceling)."""
        query = sa.select(provider_waits).where(_W.execution_id == execution_id, _W.state.in_(_NOT_ENDED))
        return self._rows.all(query.order_by(_W.since, _W.node_id), _wait)

    def open_wait(self, execution_id: str, node_id: str) -> ProviderWait | None:
        """The provider job the node waits on (waiting, or finished and not collected); None when it waits on none."""
        query = sa.select(provider_waits).where(
            _W.execution_id == execution_id, _W.node_id == node_id, _W.state.in_(_OPEN)
        )
        return self._rows.first(query.order_by(_W.since.desc()).limit(1), _wait)

    def running(self, provider: str) -> int:
        """How many parked jobs of `provider` still run there: a provider pool's limit counts them."""
        query = sa.select(sa.func.count()).where(_W.provider == provider, _W.state == WaitState.WAITING.value)
        return int(self._rows.value(query) or 0)

    def in_state(self, state: WaitState, limit: int = 100) -> list[ProviderWait]:
        query = sa.select(provider_waits).where(_W.state == state.value).order_by(_W.updated_at)
        return self._rows.all(query.limit(limit), _wait)

    def due(self, now: datetime | None = None, limit: int = 100) -> list[ProviderWait]:
        """Waiting jobs whose next check is due, longest due first."""
        query = sa.select(provider_waits).where(_W.state == WaitState.WAITING.value, _W.next_check_at <= moment(now))
        return self._rows.all(query.order_by(_W.next_check_at).limit(limit), _wait)

    def open_executions(self, limit: int = 500) -> list[str]:
        """Executions with a job waiting, or finished and not collected."""
        query = sa.select(_W.execution_id).where(_W.state.in_(_OPEN)).group_by(_W.execution_id)
        return [str(execution_id) for (execution_id,) in self._rows.tuples(query.limit(limit))]

    def check_again(self, provider: str, job_id: str, seconds: float) -> None:
        later = moment(None) + timedelta(seconds=seconds)
        self._move(provider, job_id, (WaitState.WAITING.value,), next_check_at=later)

    def finish(self, provider: str, job_id: str) -> bool:
        """waiting -> finished; True for the one caller that moved it."""
        return self._move(provider, job_id, (WaitState.WAITING.value,), state=WaitState.FINISHED.value)

    def collect_node(self, execution_id: str, node_id: str) -> bool:
        """The node's open waits -> collected: its continuation made its video."""
        where = sa.and_(_W.execution_id == execution_id, _W.node_id == node_id)
        return (
            self._rows.move(provider_waits, where, _OPEN, state=WaitState.COLLECTED.value, updated_at=moment(None)) > 0
        )

    def collect_follows(self, execution_id: str) -> bool:
        """The execution's finished follows -> collected: they woke it; its continuation looks at their nodes anew
        (reused, taken over, or parked again on a new follow)."""
        where = sa.and_(_W.execution_id == execution_id, _W.provider == SAME_LINEAGE)
        finished = (WaitState.FINISHED.value,)
        return (
            self._rows.move(provider_waits, where, finished, state=WaitState.COLLECTED.value, updated_at=moment(None))
            > 0
        )

    def cancel_execution(self, execution_id: str) -> bool:
        """The execution's open waits -> canceling: their provider jobs are to be canceled."""
        where, canceling = _W.execution_id == execution_id, WaitState.CANCELING.value
        return self._rows.move(provider_waits, where, _OPEN, state=canceling, updated_at=moment(None)) > 0

    def canceled(self, provider: str, job_id: str) -> bool:
        return self._move(provider, job_id, (WaitState.CANCELING.value,), state=WaitState.CANCELED.value)

    def _move(self, provider: str, job_id: str, sources: tuple[str, ...], **values: object) -> bool:
        where = sa.and_(_W.provider == provider, _W.job_id == job_id)
        return self._rows.move(provider_waits, where, sources, **values, updated_at=moment(None)) == 1


def follow_job_id(lineage: str, execution_id: str, node_id: str) -> str:
    """The follow's "job id": one per following node (at most 64 + 64 + 64 characters and two colons)."""
    return f"{lineage}:{execution_id}:{node_id}"


class LineageFollows:
    """The `ProviderJobs` of `SAME_LINEAGE`: a follow ends once the lineage's result is recorded, or once whoever
    holds its claim no longer waits on a provider job (it computes now, or it ended: the follower takes over)."""

    name = SAME_LINEAGE

    def __init__(self, store: SubmissionStore) -> None:
        self._store = store

    def job_finished(self, job_id: str) -> bool:
        lineage, execution_id, _node_id = job_id.split(":", 2)
        submission = self._store.get(execution_id)
        if submission is None:
            return True
        index = NodeResultIndex(self._store)
        if index.find(submission.tenant, lineage) is not None:
            return True
        holder = index.claim_of(submission.tenant, lineage)
        return holder is None or ProviderWaits(self._store).open_wait(holder.execution_id, holder.node_id) is None

    def cancel_job(self, job_id: str) -> bool:
        return True  # the job is the holder's: it runs on for the execution that started it
