"""The node result index on real databases (a SQLite file and a fresh PostgreSQL database): migration 5,
lookups per tenant, newest result wins, and the claims that make racing executions compute a lineage once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.plan.results import VideoResult
from video_pipelines.submissions import (
    SCHEMA_VERSION,
    AttemptReason,
    AttemptStore,
    CachedNode,
    NodeClaim,
    NodeResultIndex,
    SubmissionState,
    SubmissionStore,
)
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.submissions.schema import VERSIONS

from ..conftest import STORE_KEY
from .test_submissions_store import database_at, in_parallel, raw_rows

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def lineage(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def wire(name: str) -> dict[str, Any]:
    return VideoResult(
        url=f"file:///artifacts/{name}.mp4",
        duration=2.5,
        width=1280,
        height=720,
        aspect_ratio="16:9",
        size_bytes=1234,
        sha256=lineage(f"bytes of {name}"),
    ).to_wire()


def node(name: str, tenant: str = "acme", *, run_id: str = "run-1", node_id: str = "clip", **extra: Any) -> CachedNode:
    values: dict[str, Any] = {
        "tenant": tenant,
        "lineage": lineage(name),
        "execution_id": "exec_1",
        "node_id": node_id,
        "operation": "generateVideo",
        "run_id": run_id,
        "result": wire(f"{name}-{run_id}"),
        "cost_usd": 0.25,
        **extra,
    }
    return CachedNode(**values)


def claim(index: NodeResultIndex, name: str, run_id: str, *, node_id: str = "clip", **extra: Any) -> NodeClaim:
    return index.claim("acme", lineage(name), execution_id=f"exec_{run_id}", node_id=node_id, run_id=run_id, **extra)


def stores(db_url: str, count: int) -> list[SubmissionStore]:
    # Separate stores are separate engines: to the database, separate clients.
    return [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(count)]


# --- migration 5 ------------------------------------------------------------------------------


def test_migration_5_keeps_everything_and_adds_the_node_tables(db_url: str) -> None:
    """A database at schema 4 with a submission, deliveries of two attempts and an attempt keeps them through step 5."""
    at = "'2026-01-01 00:00:00+00'"
    columns = "webhook_id, execution_id, event, node_id, url, body, state, attempts, next_attempt_at, created_at"
    database_at(
        db_url,
        4,
        "INSERT INTO video_pipelines_submissions (execution_id, plan, priority, state, created_at, updated_at, "
        f"tenant, run_id) VALUES ('exec_old', '{{}}', 'normal', 'launched', {at}, {at}, 'acme', 'run-old')",
        f"INSERT INTO video_pipelines_webhook_deliveries ({columns}) VALUES ('msg_exec_old_failed', "
        f"'exec_old', 'failed', '', 'http://receiver', '{{}}', 'delivered', 1, {at}, {at})",
        f"INSERT INTO video_pipelines_webhook_deliveries ({columns}, attempt) VALUES ('msg_exec_old_attempt2_failed', "
        f"'exec_old', 'failed', '', 'http://receiver', '{{}}', 'pending', 0, {at}, {at}, 2)",
        "INSERT INTO video_pipelines_webhook_attempts (webhook_id, number, started_at, finished_at, "
        f"status_code, duration_ms) VALUES ('msg_exec_old_failed', 1, {at}, {at}, 200, 5)",
        "INSERT INTO video_pipelines_attempts (execution_id, number, reason, previous_run_id, state, requested_at) "
        f"VALUES ('exec_old', 2, 'retry', 'run-old', 'pending', {at})",
        "INSERT INTO video_pipelines_counters (metric, labels, value) VALUES ('submissions_total', '{}', 3)",
    )
    from video_pipelines.webhooks import DeliveryOutbox

    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        old = opened.get("exec_old")
        assert old is not None and old.tenant == "acme" and old.state is SubmissionState.LAUNCHED
        outbox = DeliveryOutbox(opened)
        assert sorted((d.attempt, d.webhook_id) for d in outbox.deliveries("exec_old")) == [
            (1, "msg_exec_old_failed"),
            (2, "msg_exec_old_attempt2_failed"),
        ]
        assert [attempt.status_code for attempt in outbox.attempts("msg_exec_old_failed")] == [200]
        [attempt] = AttemptStore(opened).of_execution("exec_old")
        assert (attempt.number, attempt.reason, attempt.previous_run_id) == (2, AttemptReason.RETRY, "run-old")

        index = NodeResultIndex(opened)
        assert index.count() == 0
        index.record(node("a"), now=T0)
        assert index.find("acme", lineage("a")) == node("a", recorded_at=T0)
    assert raw_rows(db_url, "SELECT metric, value FROM video_pipelines_counters") == [
        {"metric": "submissions_total", "value": 3.0}
    ]

    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        keys = {name: inspector.get_pk_constraint(name)["constrained_columns"] for name in tables}
        nullable = {
            name: {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
            for name in ("video_pipelines_node_results", "video_pipelines_node_claims")
        }
    finally:
        engine.dispose()
    assert {"video_pipelines_node_results", "video_pipelines_node_claims", "video_pipelines_attempts"} <= tables
    assert keys["video_pipelines_node_results"] == keys["video_pipelines_node_claims"] == ["tenant", "lineage"]
    assert nullable["video_pipelines_node_results"] == {
        "tenant": False,
        "lineage": False,
        "execution_id": False,
        "node_id": False,
        "operation": False,
        "run_id": False,
        "result": False,
        "cost_usd": False,
        "recorded_at": False,
    }
    assert set(nullable["video_pipelines_node_claims"]) == {
        "tenant",
        "lineage",
        "execution_id",
        "node_id",
        "run_id",
        "claimed_at",
    } and not any(nullable["video_pipelines_node_claims"].values())
    versions = raw_rows(db_url, "SELECT version, description FROM video_pipelines_schema_version ORDER BY version")
    assert [row["version"] for row in versions] == list(VERSIONS) and SCHEMA_VERSION >= 5
    assert versions[4]["description"] == "node results by lineage, node claims"


def test_a_lookup_is_a_primary_key_probe(db_url: str, store: SubmissionStore) -> None:
    """What the database plans for `find`: the primary key's index, never a scan of the table."""
    index = NodeResultIndex(store)
    for n in range(50):
        index.record(node(f"n{n}", tenant=f"t{n % 5}"), now=T0)
    query = "SELECT * FROM video_pipelines_node_results WHERE tenant = 'acme' AND lineage = '{}'".format(lineage("x"))
    with store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # On a table this small the planner would rightly pick a scan; forbid it to see that the key can answer.
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {query}"))
            assert "Index Scan using video_pipelines_node_results_pkey" in plan or "Index Only Scan" in plan, plan
        else:
            plan = " ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            assert "USING INDEX" in plan and "tenant=? AND lineage=?" in plan, plan


# --- find and record ------------------------------------------------------------------------


def test_find_and_find_many_are_per_tenant(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    index.record(node("a"), now=T0)
    index.record(node("b"), now=T0 + timedelta(seconds=1))
    index.record(node("c", tenant="globex"), now=T0)

    found = index.find("acme", lineage("a"))
    assert found == node("a", recorded_at=T0)
    assert found is not None and found.recorded_at is not None and found.recorded_at.tzinfo is UTC
    assert VideoResult.from_wire(found.result) == VideoResult.from_wire(wire("a-run-1"))
    # Another tenant's lineage is not found, even when it is the same lineage.
    assert index.find("acme", lineage("c")) is None
    assert index.find("globex", lineage("a")) is None
    assert index.find("acme", lineage("never")) is None

    many = index.find_many("acme", [lineage("a"), lineage("b"), lineage("c"), lineage("never"), lineage("a")])
    assert many == {
        lineage("a"): node("a", recorded_at=T0),
        lineage("b"): node("b", recorded_at=T0 + timedelta(seconds=1)),
    }
    assert index.find_many("globex", {lineage("a"), lineage("c")}) == {
        lineage("c"): node("c", "globex", recorded_at=T0)
    }
    assert index.find_many("acme", []) == {}
    assert index.count() == 3


def test_find_many_is_one_query(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    names = [f"n{n}" for n in range(10)]
    for name in names[::2]:
        index.record(node(name), now=T0)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        found = index.find_many("acme", [lineage(name) for name in names])
        assert index.find_many("acme", []) == {}
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert set(found) == {lineage(name) for name in names[::2]}
    selects = [statement for statement in statements if "video_pipelines_node_results" in statement]
    assert len(selects) == 1 and " IN " in selects[0], statements


def test_recording_again_replaces_the_result_and_releases_only_the_recorders_claim(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    held = claim(index, "a", "run-1", now=T0)
    index.record(node("a", run_id="run-1"), now=T0 + timedelta(minutes=1))
    assert index.find("acme", lineage("a")) == node("a", run_id="run-1", recorded_at=T0 + timedelta(minutes=1))
    assert index.claim_of("acme", lineage("a")) is None, "the recorder's claim goes with its result"

    # A fresh take (`cache: false`) by another run: its result replaces the older one, and the
    # claim it does not hold stays.
    other = claim(index, "a", "run-3", now=T0 + timedelta(minutes=2))
    assert other != held and other.run_id == "run-3"
    fresh = node("a", run_id="run-2", execution_id="exec_2", cost_usd=0.5)
    index.record(fresh, now=T0 + timedelta(minutes=3))
    assert index.find("acme", lineage("a")) == node(
        "a", run_id="run-2", execution_id="exec_2", cost_usd=0.5, recorded_at=T0 + timedelta(minutes=3)
    )
    assert index.claim_of("acme", lineage("a")) == other
    # The same run but another node of it does not hold the claim either.
    index.record(node("a", run_id="run-3", node_id="other"), now=T0 + timedelta(minutes=4))
    assert index.claim_of("acme", lineage("a")) == other
    index.record(node("a", run_id="run-3"), now=T0 + timedelta(minutes=5))
    assert index.claim_of("acme", lineage("a")) is None

    # A record made with an older moment never replaces a newer result.
    index.record(node("a", run_id="run-old"), now=T0)
    newest = index.find("acme", lineage("a"))
    assert newest is not None and newest.run_id == "run-3" and newest.recorded_at == T0 + timedelta(minutes=5)
    assert index.count() == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lineage": "ABC"}, "64 lowercase hex"),
        ({"lineage": lineage("a").upper()}, "64 lowercase hex"),
        ({"lineage": lineage("a") + "0"}, "64 lowercase hex"),
        ({"tenant": ""}, "tenant of 1 to 64"),
        ({"tenant": "t" * 65}, "tenant of 1 to 64"),
        ({"execution_id": ""}, "execution id"),
        ({"execution_id": "e" * 65}, "execution id"),
        ({"node_id": ""}, "plan node's id"),
        ({"run_id": ""}, "Dagster run id"),
        ({"operation": ""}, "operation"),
        ({"operation": "o" * 33}, "operation"),
        ({"result": ["not", "a", "dict"]}, "JSON object"),
        ({"result": {"duration": float("nan")}}, "cannot be stored as JSON"),
        ({"result": {"when": datetime(2030, 1, 1)}}, "cannot be stored as JSON"),
        ({"cost_usd": -0.01}, "cost_usd"),
        ({"cost_usd": float("inf")}, "cost_usd"),
    ],
)
def test_records_that_cannot_be_kept_are_refused(store: SubmissionStore, change: dict[str, Any], message: str) -> None:
    index = NodeResultIndex(store)
    with pytest.raises(SubmissionStoreError, match=message):
        index.record(node("a", **change))
    assert index.count() == 0


def test_lookups_and_claims_check_their_arguments(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    with pytest.raises(SubmissionStoreError, match="64 lowercase hex"):
        index.find("acme", "not-a-lineage")
    with pytest.raises(SubmissionStoreError, match="64 lowercase hex"):
        index.find_many("acme", [lineage("a"), "nope"])
    with pytest.raises(SubmissionStoreError, match="tenant of 1 to 64"):
        index.find_many("", [])
    with pytest.raises(SubmissionStoreError, match="timezone-aware"):
        index.record(node("a"), now=datetime(2030, 1, 1))
    with pytest.raises(SubmissionStoreError, match="Dagster run id"):
        index.claim("acme", lineage("a"), execution_id="exec_1", node_id="clip", run_id="")
    with pytest.raises(SubmissionStoreError, match="timezone-aware"):
        claim(index, "a", "run-1", now=datetime(2030, 1, 1))
    assert index.claim_of("acme", lineage("a")) is None


# --- claims ---------------------------------------------------------------------------------


def test_the_first_claim_wins_and_the_second_gets_it(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    first = claim(index, "a", "run-1", now=T0)
    assert first == NodeClaim("acme", lineage("a"), "exec_run-1", "clip", "run-1", T0)
    second = claim(index, "a", "run-2", now=T0 + timedelta(seconds=5))
    assert second == first == index.claim_of("acme", lineage("a"))
    # Claiming again as the holder returns the same claim: it still holds it.
    assert claim(index, "a", "run-1", now=T0 + timedelta(seconds=9)) == first
    # Claims are per tenant and lineage.
    other_tenant = index.claim("globex", lineage("a"), execution_id="exec_9", node_id="clip", run_id="run-9")
    assert other_tenant.run_id == "run-9"
    assert claim(index, "b", "run-2", now=T0).run_id == "run-2"


def test_racing_claims_over_four_stores_make_one_holder(db_url: str) -> None:
    opened = stores(db_url, 4)
    try:
        claims = in_parallel(16, lambda i: claim(NodeResultIndex(opened[i % 4]), "hot", f"run-{i}"))
        stored = NodeResultIndex(opened[0]).claim_of("acme", lineage("hot"))
    finally:
        for each in opened:
            each.close()
    assert len(set(claims)) == 1 and stored == claims[0]
    holders = [i for i, got in enumerate(claims) if got.run_id == f"run-{i}"]
    assert len(holders) == 1
    rows = raw_rows(db_url, "SELECT run_id FROM video_pipelines_node_claims")
    assert rows == [{"run_id": f"run-{holders[0]}"}]


def test_a_stale_claim_is_taken_over_once(db_url: str, store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    stale = claim(index, "a", "run-dead", now=T0)

    mine = index.take_over(stale, execution_id="exec_2", node_id="clip", run_id="run-2", now=T0 + timedelta(minutes=1))
    assert mine == NodeClaim("acme", lineage("a"), "exec_2", "clip", "run-2", T0 + timedelta(minutes=1))
    assert index.claim_of("acme", lineage("a")) == mine
    # The loser of the race read the same stale claim: it has changed since.
    assert index.take_over(stale, execution_id="exec_3", node_id="clip", run_id="run-3") is None
    assert index.claim_of("acme", lineage("a")) == mine

    # Once released (or recorded), there is nothing to take over.
    assert index.release("acme", lineage("a"), run_id="run-2", node_id="clip")
    assert index.take_over(mine, execution_id="exec_3", node_id="clip", run_id="run-3") is None
    assert index.claim_of("acme", lineage("a")) is None

    # Many processes taking over one stale claim at once: exactly one does.
    stale = claim(index, "b", "run-dead", now=T0)
    opened = stores(db_url, 4)
    try:
        taken = in_parallel(
            12,
            lambda i: NodeResultIndex(opened[i % 4]).take_over(
                stale, execution_id=f"exec_{i}", node_id="clip", run_id=f"run-{i}"
            ),
        )
    finally:
        for each in opened:
            each.close()
    winners = [got for got in taken if got is not None]
    assert len(winners) == 1 and index.claim_of("acme", lineage("b")) == winners[0]


def test_only_the_holder_releases_its_claim(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    held = claim(index, "a", "run-1", node_id="clip")
    assert not index.release("acme", lineage("a"), run_id="run-2", node_id="clip")
    assert not index.release("acme", lineage("a"), run_id="run-1", node_id="other")
    assert not index.release("globex", lineage("a"), run_id="run-1", node_id="clip")
    assert index.claim_of("acme", lineage("a")) == held
    assert index.release("acme", lineage("a"), run_id="run-1", node_id="clip")
    assert not index.release("acme", lineage("a"), run_id="run-1", node_id="clip")
    # Released, the lineage can be claimed by the next one.
    assert claim(index, "a", "run-2").run_id == "run-2"
