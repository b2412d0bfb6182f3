"""The dashboard's PostgreSQL panels (submit -> start latency, spend per hour) run on a real database with known
rows, their Grafana time macros expanded as Grafana's PostgreSQL datasource does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from video_pipelines.submissions import ExecutionOutcomes, NodeResultIndex, SubmissionStore
from video_pipelines.submissions.node_results import CachedNode
from video_pipelines.submissions.schema import submissions

from ..conftest import STORE_KEY
from ..unit.test_dashboard import POSTGRES_DATASOURCE, targets

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def run_panel(store: SubmissionStore, title: str, since: datetime, until: datetime) -> list[tuple[object, ...]]:
    [sql] = [target["rawSql"] for panel, target in targets(POSTGRES_DATASOURCE) if panel == title]
    # Grafana's $__timeFrom() and $__timeTo() become the dashboard range's ends as quoted RFC 3339 timestamps.
    query = sql.replace("$__timeFrom()", f"'{since.isoformat()}'").replace("$__timeTo()", f"'{until.isoformat()}'")
    assert "$__" not in query, query
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(query))]


def test_latency_and_spend_panels_on_known_rows(postgres_url: str) -> None:
    with SubmissionStore(postgres_url, secret_key=STORE_KEY) as store:
        outcomes = ExecutionOutcomes(store)
        # (submitted, seconds until it started): three start in the first minute, the last in the next.
        seconds = [(START, 1.0), (START + timedelta(seconds=1), 2.0), (START + timedelta(seconds=2), 3.0)]
        seconds.append((START + timedelta(seconds=55), 10.0))
        for created, wait in seconds:
            submission, _created = store.submit({"jobs": []})
            with store.engine.begin() as connection:
                where = submissions.c.execution_id == submission.execution_id
                connection.execute(submissions.update().where(where).values(created_at=created))
            assert outcomes.claim_start(submission.execution_id, created + timedelta(seconds=wait))
        index = NodeResultIndex(store)
        costs = [("generateVideo", 0.5, START), ("generateVideo", 0.25, START + timedelta(minutes=30))]
        costs += [("lipSync", 1.5, START + timedelta(minutes=5)), ("merge", 0.0, START)]
        costs += [("generateVideo", 2.0, START + timedelta(hours=1, minutes=1))]
        for number, (operation, cost, at) in enumerate(costs):
            node = CachedNode("default", f"{number:064x}", "exec", f"n{number}", operation, "run", {"url": "x"}, cost)
            index.record(node, now=at)

        latency = run_panel(store, "Submit -> start latency", START, START + timedelta(hours=1))
        assert [(when, p50, p95, most) for when, p50, p95, most in latency] == [
            (START, pytest.approx(2.0), pytest.approx(2.9), pytest.approx(3.0)),
            (START + timedelta(minutes=1), pytest.approx(10.0), pytest.approx(10.0), pytest.approx(10.0)),
        ]
        spend = run_panel(store, "Spend per hour (USD)", START, START + timedelta(hours=2))
        assert spend == [
            (START, "generateVideo", pytest.approx(0.75)),
            (START, "lipSync", pytest.approx(1.5)),
            (START + timedelta(hours=1), "generateVideo", pytest.approx(2.0)),
        ]
        # The range bounds the rows: the second hour alone.
        assert run_panel(store, "Spend per hour (USD)", START + timedelta(hours=1), START + timedelta(hours=2)) == [
            (START + timedelta(hours=1), "generateVideo", pytest.approx(2.0))
        ]
