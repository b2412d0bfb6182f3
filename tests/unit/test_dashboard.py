"""The Grafana dashboard (deployment/grafana/video-pipelines.json): every Prometheus query names metrics that
`/metrics` serves, read from what `render_metrics` writes, and it has the panels operators look for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from video_pipelines.executions.metrics import render_metrics
from video_pipelines.submissions import SubmissionStore

from ..memory_records import MemoryRunRecords

DASHBOARD = Path(__file__).parents[2] / "deployment" / "grafana" / "video-pipelines.json"

# PromQL's words that are not metric names: aggregation modifiers, keywords, and the histogram's `le` label.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets(datasource_type: str) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query on a datasource of this type."""
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == datasource_type
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, labels or keywords."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors ($__rate_interval, 1h)
    bare = re.sub(r"\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b", "", bare)  # numbers and durations (offset 1h)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        following = bare[match.end() :].lstrip()
        if not following.startswith("(") and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def served_names(store: SubmissionStore) -> set[str]:
    """What a query may select from this scrape: counters as `_total`, histograms as `_bucket`, `_sum`, `_count`."""
    text = render_metrics(store, MemoryRunRecords()).decode()
    served: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        served |= {family.name + suffix for suffix in suffixes}
    return served


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, max by (le, operation) (rate(a_bucket{provider="x{y}"}[$__rate_interval]))) '
        "- ignoring(status) sum(b_total offset 1h) * 60"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_every_prometheus_query_names_a_metric_that_metrics_serves(sqlite_store: SubmissionStore) -> None:
    served = served_names(sqlite_store)
    assert "video_pipelines_executions_finished_total" in served and "video_pipelines_node_seconds_bucket" in served
    queries = targets("prometheus")
    assert queries
    unknown = {}
    for title, target in queries:
        names = metric_names(target["expr"])
        assert names, f"{title}: {target['expr']} selects no metric"
        if missing := names - served:
            unknown[title] = sorted(missing)
    assert not unknown, f"queries name metrics /metrics does not serve: {unknown}"


def test_the_panels_operators_look_for() -> None:
    panels = {panel["title"]: panel for panel in dashboard()["panels"]}
    exprs = {title: " ".join(t["expr"] for t in panel["targets"]) for title, panel in panels.items()}
    wanted = {
        "Executions by status (per minute)": "video_pipelines_executions_finished_total",
        "Submit -> start latency": "video_pipelines_submit_to_start_seconds_bucket",
        "Node seconds by operation and provider (p95)": "video_pipelines_node_seconds_bucket",
        "Queue depth": "video_pipelines_queued_runs",
        "Webhook outcomes (per minute)": "video_pipelines_webhook_attempts_total",
        "Provider errors (per minute)": "video_pipelines_provider_http_errors_total",
        "Open circuits": "video_pipelines_provider_circuit_open",
        "Spend per hour (USD)": "video_pipelines_spend_usd_total",
    }
    for title, name in wanted.items():
        assert title in panels and name in exprs[title], (title, exprs.get(title))
    # Importable as is: every panel's datasource is the dashboard's datasource variable.
    variables = {v["name"]: v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "datasource"}
    assert variables == {"prometheus": "prometheus"}
    for panel in panels.values():
        uid = panel["datasource"]["uid"]
        assert uid.startswith("${") and variables[uid[2:-1]] == panel["datasource"]["type"], panel["title"]
    ids = [panel["id"] for panel in panels.values()]
    assert len(ids) == len(set(ids)) == len(dashboard()["panels"])
