"""Node results by (tenant, lineage), and the claims that make one lineage computed once:

    find ── hit ──> reuse
      └─ miss ──> claim ── ours ──> find again ── hit ──> release, reuse
                    │                 └─ miss ──> compute, record (releases the claim)
                    └─ another's ──> wait for `find`; if the holder's run ended without a result, take_over

The primary key decides a claim race; `record` upserts and releases in one transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.submissions.rows import Rows, insert_into, moment, record
from video_pipelines.submissions.schema import node_claims, node_results
from video_pipelines.submissions.store import SubmissionStore

_LINEAGE_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_MAX_TENANT_LENGTH: Final = 64
_MAX_EXECUTION_ID_LENGTH: Final = 64
_MAX_OPERATION_LENGTH: Final = 32
# A claim can vanish between our failed INSERT and the read of the winner: then we insert again.
_CLAIM_TRIES: Final = 5

_R = node_results.c
_C = node_claims.c


@dataclass(frozen=True)
class NodeOrigin:
    """A node computed under its tenant and lineage: in which execution, plan node, operation and run."""

    tenant: str
    lineage: str
    execution_id: str
    node_id: str
    operation: str
    run_id: str


@dataclass(frozen=True)
class CachedNode(NodeOrigin):
    """A completed node's result, recorded under its tenant and lineage where it was computed."""

    result: Mapping[str, Any]  # the VideoResult wire dict, as given
    cost_usd: float = 0.0
    recorded_at: datetime | None = None  # set by the store (aware UTC) when read back


@dataclass(frozen=True)
class NodeClaim:
    """Who is computing a lineage right now: the run and plan node that claimed it, and when."""

    tenant: str
    lineage: str
    execution_id: str
    node_id: str
    run_id: str
    claimed_at: datetime  # aware UTC


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not tenant or len(tenant) > _MAX_TENANT_LENGTH:
        raise SubmissionStoreError(
            f"a node result is kept per tenant: give a tenant of 1 to {_MAX_TENANT_LENGTH} characters; got {tenant!r}"
        )


def _check_lineage(lineage: str) -> None:
    if not isinstance(lineage, str) or _LINEAGE_PATTERN.fullmatch(lineage) is None:
        raise SubmissionStoreError(
            f"a lineage is the 64 lowercase hex digits of a sha256 (plan.lineage.lineage_hashes); got {lineage!r}"
        )


def _check_key(tenant: str, lineage: str) -> None:
    _check_tenant(tenant)
    _check_lineage(lineage)


def _check_holder(lineage: str, execution_id: str, node_id: str, run_id: str) -> None:
    if not isinstance(execution_id, str) or not execution_id or len(execution_id) > _MAX_EXECUTION_ID_LENGTH:
        raise SubmissionStoreError(
            f"lineage {lineage}: give the execution id of the node (1 to {_MAX_EXECUTION_ID_LENGTH} characters); "
            f"got {execution_id!r}"
        )
    if not isinstance(node_id, str) or not node_id:
        raise SubmissionStoreError(f"lineage {lineage}: give the plan node's id; got {node_id!r}")
    if not isinstance(run_id, str) or not run_id:
        raise SubmissionStoreError(f"lineage {lineage} (node {node_id}): give the Dagster run id; got {run_id!r}")


def _check_node(node: CachedNode) -> dict[str, Any]:
    """`node` as a row to write (without `recorded_at`), once every field is checked."""
    _check_key(node.tenant, node.lineage)
    _check_holder(node.lineage, node.execution_id, node.node_id, node.run_id)
    where = f"node {node.node_id} (lineage {node.lineage})"
    if not isinstance(node.operation, str) or not node.operation or len(node.operation) > _MAX_OPERATION_LENGTH:
        raise SubmissionStoreError(
            f"{where}: give its operation (1 to {_MAX_OPERATION_LENGTH} characters); got {node.operation!r}"
        )
    if not isinstance(node.result, Mapping):
        raise SubmissionStoreError(f"{where}: the result must be the video result's wire dict, a JSON object")
    try:
        # Both databases store it as JSON: refuse now, with the node's name, what JSON cannot hold.
        json.dumps(dict(node.result), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SubmissionStoreError(f"{where}: the result cannot be stored as JSON: {exc}") from None
    cost = node.cost_usd
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        raise SubmissionStoreError(f"{where}: cost_usd must be a finite number >= 0; got {cost!r}")
    row = {**vars(node), "result": dict(node.result), "cost_usd": float(cost)}
    del row["recorded_at"]
    return row


def _cached(row: sa.RowMapping) -> CachedNode:
    return record(CachedNode, row, cost_usd=float(row["cost_usd"]))


def _held_by(tenant: str, lineage: str, run_id: str, node_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_C.tenant == tenant, _C.lineage == lineage, _C.run_id == run_id, _C.node_id == node_id)


def _upsert(dialect: str, row: dict[str, Any]) -> sa.Insert:
    """INSERT `row` or replace an older one: ON CONFLICT, since an IntegrityError would abort PostgreSQL's
    transaction, and with it the claim's release that must commit with the result."""
    insert = insert_into(node_results, dialect)
    statement = insert.values(row)
    replaced = {name: statement.excluded[name] for name in row if name not in ("tenant", "lineage")}
    return statement.on_conflict_do_update(
        index_elements=[_R.tenant, _R.lineage],
        set_=replaced,
        # Ties go to the later write: recording a fresh take at the same instant still replaces.
        where=_R.recorded_at <= statement.excluded.recorded_at,
    )


class NodeResultIndex:
    """Completed nodes by (tenant, lineage) and the claims of nodes being computed, on the store's engine."""

    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def find(self, tenant: str, lineage: str) -> CachedNode | None:
        _check_key(tenant, lineage)
        return self._rows.first(sa.select(node_results).where(_R.tenant == tenant, _R.lineage == lineage), _cached)

    def find_many(self, tenant: str, lineages: Collection[str]) -> dict[str, CachedNode]:
        _check_tenant(tenant)
        wanted = set(lineages)
        for lineage in wanted:
            _check_lineage(lineage)
        if not wanted:
            return {}
        query = sa.select(node_results).where(_R.tenant == tenant, _R.lineage.in_(sorted(wanted)))
        return {node.lineage: node for node in self._rows.all(query, _cached)}

    def record(self, node: CachedNode, *, now: datetime | None = None) -> None:
        """Record `node`'s result at `now` and release its claim, in one transaction; a newer result is kept."""
        row = {**_check_node(node), "recorded_at": moment(now)}
        release = node_claims.delete().where(_held_by(node.tenant, node.lineage, node.run_id, node.node_id))
        with self._rows.engine.begin() as connection:
            connection.execute(_upsert(connection.dialect.name, row))
            connection.execute(release)

    def claim(
        self, tenant: str, lineage: str, *, execution_id: str, node_id: str, run_id: str, now: datetime | None = None
    ) -> NodeClaim:
        """Claim (tenant, lineage): ours, or the claim already there, unchanged."""
        _check_key(tenant, lineage)
        _check_holder(lineage, execution_id, node_id, run_id)
        ours = NodeClaim(tenant, lineage, execution_id, node_id, run_id, moment(now))
        for _ in range(_CLAIM_TRIES):
            # Insert first (no read before it): on every node's path, a claim is almost always new.
            try:
                with self._rows.engine.begin() as connection:
                    connection.execute(node_claims.insert().values(vars(ours)))
            except sa.exc.IntegrityError:
                existing = self.claim_of(tenant, lineage)
                if existing is not None:
                    return existing
                continue  # its holder released it between our insert and our read: try again
            return ours
        raise SubmissionStoreError(
            f"lineage {lineage} of tenant {tenant}: the claim was taken and released {_CLAIM_TRIES} times "
            f"while node {node_id} tried to claim it; try again"
        )

    def claim_of(self, tenant: str, lineage: str) -> NodeClaim | None:
        _check_key(tenant, lineage)
        query = sa.select(node_claims).where(_C.tenant == tenant, _C.lineage == lineage)
        return self._rows.first(query, lambda row: record(NodeClaim, row))

    def take_over(
        self, stale: NodeClaim, *, execution_id: str, node_id: str, run_id: str, now: datetime | None = None
    ) -> NodeClaim | None:
        """Take over `stale` (its holder's run ended without a result): ours, or None when it changed meanwhile."""
        _check_key(stale.tenant, stale.lineage)
        _check_holder(stale.lineage, execution_id, node_id, run_id)
        ours = NodeClaim(stale.tenant, stale.lineage, execution_id, node_id, run_id, moment(now))
        still_stale = sa.and_(
            _held_by(stale.tenant, stale.lineage, stale.run_id, stale.node_id),
            _C.claimed_at == moment(stale.claimed_at),
        )
        statement = node_claims.update().where(still_stale).values(vars(ours))
        return ours if self._rows.changed(statement) == 1 else None

    def release(self, tenant: str, lineage: str, *, run_id: str, node_id: str) -> bool:
        _check_key(tenant, lineage)
        return self._rows.changed(node_claims.delete().where(_held_by(tenant, lineage, run_id, node_id))) == 1

    def count(self) -> int:
        return int(self._rows.value(sa.select(sa.func.count()).select_from(node_results)))
