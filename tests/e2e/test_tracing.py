"""End to end: a real daemon on PostgreSQL traces submitted and directly launched runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from video_pipelines.doors import client
from video_pipelines.executions import (
    TRACEPARENT_TAG,
    admit,
    submit,
)
from video_pipelines.telemetry.trace_context import (
    derived_context,
)

from ..dagster.test_tracing import (  # noqa: F401  (fixtures)
    CALLER,
    CALLER_SPAN,
    CALLER_TRACE,
    by_name,
    collector,
    has,
    local_plan,
    provider_plan,
    receiver,
    replicate,
    traced,
    traceparent_ids,
)
from ..otlp_collector import OtlpCollector
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..receiver import WebhookReceiver
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate
from .test_graphql import LAUNCH, launch_params


@pytest.fixture
def daemon_deployment(
    tmp_path: Path,
    collector: OtlpCollector,  # noqa: F811  (fixtures imported above)
    replicate: FakeReplicate,  # noqa: F811
) -> Iterator[DagsterDeployment]:
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-tracing",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": replicate.base_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    with deployment_database() as url, dagster_deployment(tmp_path, url, extra_env=env) as deployment:
        yield deployment


@pytest.mark.postgres
def test_e2e_the_daemon_traces_submitted_and_direct_runs(
    daemon_deployment: DagsterDeployment,
    traced: OtlpCollector,  # noqa: F811
    receiver: WebhookReceiver,  # noqa: F811
    replicate: FakeReplicate,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with daemon_deployment.client(monkeypatch) as target:
        execution_id = submit(admit(provider_plan(receiver.url("/sdk"))), target.store, trace_parent=CALLER)
        final = client.wait(execution_id, timeout=180, target=target)
        assert final["status"] == "completed" and final["traceId"] == CALLER_TRACE
        submission = target.store.get(execution_id)
        assert submission is not None and submission.traceparent is not None
        execution_span = traceparent_ids(submission.traceparent)[1]
        run = target.instance.get_run_by_id(final["runId"])
        assert run is not None and run.tags[TRACEPARENT_TAG] == submission.traceparent

        # A run launched through GraphQL, its steps in forkserver processes (which exit past atexit).
        plan = local_plan(receiver.url("/direct"))
        params = launch_params(plan)
        params["runConfigData"]["execution"] = {"config": {"multiprocess": {"start_method": {"forkserver": {}}}}}
        launched = daemon_deployment.graphql(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 180
        while not (ended := target.instance.get_run_by_id(run_id)) or not ended.is_finished:
            assert time.monotonic() < deadline, daemon_deployment.log_tail()
            time.sleep(0.5)
        direct = client.status(run_id, target=target)
        assert direct["status"] == "completed" and direct["traceId"] == run_id.replace("-", "")

    # The daemon's processes: the run workers' node and provider spans, the sensors' execution and webhook spans.
    spans = traced.wait_for(has("submit", "execution", "node gen", "node square", "webhook completed"),
                            trace_id=CALLER_TRACE, timeout=90)  # fmt: skip
    named = by_name(spans)
    assert [span.span_id for span in named["execution"]] == [execution_span]
    assert named["execution"][0].is_ok and named["execution"][0].parent_span_id == CALLER_SPAN
    assert all(span.parent_span_id == execution_span for span in named["node gen"] + named["node square"])
    calls = [span for span in spans if span.name.startswith("replicate ")]
    # A node that parked on its prediction has a span in each run (the one that parked, the continuation); the
    # daemon's checks of the waiting prediction are spans of the execution too.
    checks = [span for span in spans if span.name.startswith("check replicate ")]
    assert all(span.parent_span_id == execution_span for span in checks)
    parents = {span.span_id for span in named["node gen"] + checks}
    assert calls and {span.parent_span_id for span in calls} <= parents
    assert {traceparent_ids(seen.headers["traceparent"])[0] for seen in replicate.requests if seen.kind != "file"} == {
        CALLER_TRACE
    }
    [hook] = named["webhook completed"]
    assert hook.parent_span_id == execution_span
    [delivered] = receiver.wait_for("/sdk", 1)
    assert traceparent_ids(delivered.headers["traceparent"]) == (CALLER_TRACE, hook.span_id)

    direct_trace = run_id.replace("-", "")
    derived = derived_context(run_id).span_id_hex
    direct_spans = traced.wait_for(has("execution", "node a", "node b", "node ab", "webhook completed"),
                                   trace_id=direct_trace, timeout=90)  # fmt: skip
    direct_named = by_name(direct_spans)
    assert [span.span_id for span in direct_named["execution"]] == [derived]
    assert all(len(direct_named[f"node {node}"]) == 1 for node in ("a", "b", "ab"))
    assert all(direct_named[f"node {node}"][0].parent_span_id == derived for node in ("a", "b", "ab"))
    [direct_hook] = receiver.wait_for("/direct", 1)
    assert traceparent_ids(direct_hook.headers["traceparent"])[0] == direct_trace
