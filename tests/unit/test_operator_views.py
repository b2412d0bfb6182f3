"""The plain parts of the operator's views: secrets blanked in log lines, log levels, cost groups and
suggestions computed from node spends, the client's reading of a server-sent event stream."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from video_pipelines.doors.api_client import _server_sent_events
from video_pipelines.executions import NodeRecord, RunState
from video_pipelines.executions.costs import GroupBy, NodeSpend, cost_report, node_spends, suggestions
from video_pipelines.executions.lifecycle import Caller
from video_pipelines.executions.logs import REDACTED, LogLine, LogRead, Redactor, level_name
from video_pipelines.submissions import SubmissionStore
from video_pipelines.vocabulary import NodeState

from ..memory_records import MemoryRunRecords, video


def test_known_secrets_and_secret_shapes_are_blanked() -> None:
    redact = Redactor(["sk-hook-0123456789", "short", None, "r8-token-value-99"])
    text = (
        "posting to hook with sk-hook-0123456789; Authorization: Bearer abcdefghijklmnopqrstuvwx; "
        "api key vp_0123456789abcdefghijKLMNOP; replicate r8_ABCDEFGHIJKLMNOPQRST and r8-token-value-99; "
        "fetched https://bucket.s3.example.com/videos/ab.mp4?X-Amz-Signature=deadbeef&X-Amz-Credential=me ok; "
        "short words stay"
    )
    assert redact(text) == (
        f"posting to hook with {REDACTED}; Authorization: Bearer {REDACTED}; "
        f"api key {REDACTED}; replicate {REDACTED} and {REDACTED}; "
        f"fetched https://bucket.s3.example.com/videos/ab.mp4?{REDACTED} ok; "
        "short words stay"
    )
    # Ordinary lines are left as they are.
    plain = 'Execution of step "node[gen]" failed. gen (generateVideo): provider key is missing?'
    assert redact(plain) == plain


@pytest.mark.parametrize(
    ("level", "name"),
    [(10, "debug"), (20, "info"), (25, "info"), (30, "warning"), (40, "error"), (50, "critical"), (5, "debug")],
)
def test_levels_are_named_as_python_logging_names_them(level: int, name: str) -> None:
    assert level_name(level) == name


def test_a_log_page_is_last_only_when_the_execution_had_ended_and_the_page_is_not_full() -> None:
    line = LogLine(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), "info", "gen", "hello")
    page = LogRead([("run.1", line), ("run.2", line)], "run.2", ended=True)
    assert page.is_last(3) and not page.is_last(2)
    assert not LogRead([], "run.2", ended=False).is_last(3)
    assert page.to_wire() == {
        "logs": [{"at": "2026-12-07T09:00:00+00:00", "level": "info", "node": "gen", "message": "hello"}] * 2,
        "cursor": "run.2",
    }


def spend(
    execution_id: str,
    node_id: str = "gen",
    *,
    cost: float = 0.0,
    saved: float = 0.0,
    provider: str = "replicate",
    operation: str = "generateVideo",
    state: NodeState = NodeState.COMPLETED,
    sha256: str = "a" * 64,
    duration: float = 2.0,
    cached: bool = True,
    failed: bool = False,
    day: str = "2026-12-07",
    tenant: str = "acme",
) -> NodeSpend:
    return NodeSpend(
        execution_id, tenant, day, node_id, operation, provider, state, cost, saved, duration, sha256, cached, failed
    )


def test_costs_are_grouped_by_provider_operation_and_day() -> None:
    spends = [
        spend("exec_1", cost=2.0, day="2026-12-06"),
        spend("exec_1", "square", provider="local", operation="reframe", day="2026-12-06"),
        spend("exec_2", state=NodeState.REUSED, saved=1.5),
        spend("exec_3", cost=0.5, provider="fal"),
    ]
    by_provider = cost_report(spends, GroupBy.PROVIDER).to_wire()
    assert (by_provider["totalUsd"], by_provider["savedUsd"], by_provider["groupBy"]) == (2.5, 1.5, "provider")
    assert by_provider["groups"] == [
        {"key": "replicate", "totalUsd": 2.0, "savedUsd": 1.5, "nodes": 2, "executions": 2},
        {"key": "fal", "totalUsd": 0.5, "savedUsd": 0.0, "nodes": 1, "executions": 1},
        {"key": "local", "totalUsd": 0.0, "savedUsd": 0.0, "nodes": 1, "executions": 1},
    ]
    by_day = cost_report(spends, GroupBy.DAY)
    assert [(group.key, group.total_usd) for group in by_day.groups] == [("2026-12-06", 2.0), ("2026-12-07", 0.5)]
    by_operation = cost_report(spends, GroupBy.OPERATION)
    assert [(group.key, group.nodes) for group in by_operation.groups] == [("generateVideo", 3), ("reframe", 1)]
    assert cost_report([], GroupBy.PROVIDER).to_wire() == {
        "totalUsd": 0,
        "savedUsd": 0,
        "groupBy": "provider",
        "groups": [],
    }


def test_an_identical_paid_recompute_with_cache_off_is_suggested_with_its_cost() -> None:
    spends = [
        spend("exec_1", cost=3.0),
        spend("exec_2", cost=3.0, cached=False),  # the same video again, paid again
        spend("exec_3", cost=3.0, cached=False, sha256="b" * 64),  # a new take: a fresh video, nothing to save
        spend("exec_4", cost=3.0, cached=False, tenant="globex"),  # another tenant's video is not this tenant's
    ]
    [found] = suggestions(spends)
    assert (found.kind, found.estimated_saving_usd, found.executions) == ("identicalRecompute", 3.0, ["exec_2"])
    assert "cache: false" in found.message and "$3" in found.message


def test_paid_nodes_of_failed_executions_are_suggested_for_retry() -> None:
    spends = [spend("exec_1", cost=1.25, failed=True), spend("exec_2", cost=4.0), spend("exec_3", "x", failed=True)]
    [found] = suggestions(spends)
    assert (found.kind, found.estimated_saving_usd, found.executions) == ("paidFailures", 1.25, ["exec_1"])
    assert "retry" in found.message


def test_a_cheaper_provider_of_the_same_operation_is_suggested_per_second_of_video() -> None:
    spends = [
        spend("exec_1", cost=1.0, provider="replicate", duration=2.0),  # $0.5/s
        spend("exec_2", cost=2.0, provider="replicate", duration=2.0, sha256="c" * 64),  # $1/s
        spend("exec_3", cost=0.5, provider="fal", duration=2.0, sha256="d" * 64),  # $0.25/s
        spend("exec_4", cost=9.0, provider="fal", operation="lipSync", sha256="e" * 64),  # alone in its operation
    ]
    [found] = suggestions(spends)
    # replicate averaged $0.75/s over 4 s ($3); fal's $0.25/s would have made them for $1.
    assert (found.kind, found.estimated_saving_usd) == ("cheaperProvider", 2.0)
    assert found.executions == ["exec_1", "exec_2"] and "generateVideo on replicate" in found.message


def test_fallbacks_taken_are_suggested_with_what_the_failed_provider_billed() -> None:
    spends = [
        spend("exec_1", cost=0.75, provider="fal", sha256="f" * 64),
        replace(spend("exec_2", cost=0.6, provider="fal"), fallback_from=("replicate",), billed_failures_usd=0.1),
        replace(spend("exec_3", cost=0.0, provider="local"), fallback_from=("replicate", "fal")),
    ]
    [found] = suggestions(spends)
    expected = ("fallbacksTaken", 0.1, ["exec_2", "exec_3"])
    assert (found.kind, found.estimated_saving_usd, found.executions) == expected
    assert "2 node(s) moved on from replicate" in found.message and "(fal: 1, local: 1)" in found.message


def test_no_records_no_suggestion() -> None:
    assert suggestions([spend("exec_1", provider="local")]) == []


def test_server_sent_events_are_read_as_sent_and_comments_skipped() -> None:
    raw = [": keep-alive", "", "event: log", "id: run.7", 'data: {"a":1}', "", "event: end", "data: {}", ""]
    assert list(_server_sent_events(iter(raw))) == [("log", "run.7", '{"a":1}'), ("end", None, "{}")]


def test_a_node_that_fell_back_is_counted_under_the_provider_that_made_it(sqlite_store: SubmissionStore) -> None:
    fallbacks = [{"provider": "local"}]
    params = {"prompt": "a", "duration": 2, "provider": "replicate", "fallbacks": fallbacks}
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": params}]}
    submission, _created = sqlite_store.submit(plan)
    made = replace(video("gen"), provider="local", fallback_from=("replicate",))
    records = MemoryRunRecords()
    record = NodeRecord("gen", "generateVideo", NodeState.COMPLETED, "lineage", made, cost_usd=0.02)
    records.add_run(submission.execution_id, plan, RunState.SUCCESS, nodes=[record])
    [spend] = node_spends(Caller(submission.tenant), records, sqlite_store)
    assert (spend.provider, spend.cost_usd) == ("local", 0.02)
