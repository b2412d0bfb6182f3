"""Traces: an execution's spans reach a real OTLP/HTTP endpoint; its traceparent reaches webhooks and providers.

The endpoint is `tests/otlp_collector.py`, an HTTP server on 127.0.0.1 decoding what the
SDK's OTLP/HTTP exporter posts with OpenTelemetry's own protobufs. Executions run for real:
steps in their own processes (Dagster's multiprocess executor), a provider played by a
local Replicate, webhooks to a real receiver; the end to end test adds a real daemon.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.doors import client
from video_pipelines.executions import (
    TRACEPARENT_TAG,
    ExecutionStatus,
    RunState,
    admit,
    execution_status,
    record_end_quietly,
    submit,
)
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.sensors.plans import evaluate_submissions, webhook_on_completed
from video_pipelines.submissions import ExecutionOutcomes, SubmissionStore
from video_pipelines.telemetry.trace_context import (
    TraceContext,
    derived_context,
    execution_context,
    new_execution_context,
    parse_traceparent,
)
from video_pipelines.telemetry.tracing import Tracing, tracing

from ..conftest import MediaServer
from ..memory_records import MemoryRunRecords
from ..otlp_collector import OtlpCollector, ReceivedSpan
from ..receiver import WebhookReceiver, running_receiver
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate
from .conftest import FORKSERVER
from .test_api import ApiFactory, make_api  # noqa: F401  (a fixture: the app under TestClient)
from .test_metrics import resumed_and_retried
from .test_webhook_events import run_event

# The W3C Trace Context spec's own example: the caller's trace and the caller's span.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
CLIENT_KIND = 3  # Span.SpanKind.SPAN_KIND_CLIENT


def provider_plan(webhook_url: str) -> dict[str, Any]:
    return {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "a red fox", "provider": "replicate"}},
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
        ],
        "webhook": {"url": webhook_url},
    }


def local_plan(webhook_url: str) -> dict[str, Any]:
    return {
        "jobs": [
            {"id": "a", "type": "generateVideo", "params": {"prompt": "Hook A", "duration": 1, "resolution": 64}},
            {"id": "b", "type": "generateVideo", "params": {"prompt": "Hook B", "duration": 1, "resolution": 64}},
            {"id": "ab", "type": "merge", "params": {}, "dependsOn": ["a", "b"]},
        ],
        "webhook": {"url": webhook_url},
    }


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    named: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def has(*names: str) -> Any:
    return lambda spans: all(name in by_name(spans) for name in names)


def traceparent_ids(value: str) -> tuple[str, str]:
    """(trace id, parent id) of a traceparent header, checked to be well formed."""
    context = parse_traceparent(value)
    assert context is not None, value
    return context.trace_id_hex, context.span_id_hex


# --- the trace context: pure functions -------------------------------------------------------------


def test_traceparent_is_parsed_as_the_w3c_spec_says() -> None:
    context = parse_traceparent(CALLER)
    assert context == TraceContext(int(CALLER_TRACE, 16), int(CALLER_SPAN, 16), sampled=True)
    assert context.traceparent == CALLER
    assert parse_traceparent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00") == TraceContext(
        int(CALLER_TRACE, 16), int(CALLER_SPAN, 16), sampled=False
    )
    # A later version is read by its version-00 fields, extra fields allowed.
    assert parse_traceparent(f"cc-{CALLER_TRACE}-{CALLER_SPAN}-01-what-the-future-holds") == context
    for invalid in (
        None,
        "",
        "garbage",
        f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # all-zero trace id
        f"00-{CALLER_TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01",  # hex is lowercase
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{CALLER_TRACE[:-1]}-{CALLER_SPAN}-01",
    ):
        assert parse_traceparent(invalid) is None, invalid


def test_a_new_execution_joins_the_callers_trace_with_its_own_span() -> None:
    joined = new_execution_context(CALLER)
    assert joined.trace_id_hex == CALLER_TRACE and joined.span_id_hex != CALLER_SPAN and joined.sampled
    assert not new_execution_context(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00").sampled  # the caller's decision holds
    fresh = [new_execution_context(value) for value in (None, "not a traceparent", None)]
    assert len({context.trace_id for context in fresh}) == 3  # a new trace each time
    assert all(parse_traceparent(context.traceparent) == context for context in fresh)


def test_a_direct_run_derives_its_trace_from_its_run_id() -> None:
    run_id = str(uuid.uuid4())
    derived = derived_context(run_id)
    assert derived.trace_id_hex == run_id.replace("-", "")  # the trace is found by the run id
    assert derived == derived_context(run_id) == execution_context(None, run_id)
    assert derived_context(str(uuid.uuid4())).span_id != derived.span_id
    # An id that is not a UUID is hashed, still deterministically.
    assert derived_context("exec_01ABC") == derived_context("exec_01ABC") != derived_context("exec_01ABD")
    # What was stored wins.
    assert execution_context(CALLER, run_id) == parse_traceparent(CALLER)


# --- submission and the status document -----------------------------------------------------------


PLAN = {"jobs": [{"id": "a", "type": "generateVideo", "params": {"prompt": "x", "duration": 1}}]}


def test_submit_stores_the_execution_span_in_the_callers_trace(store: SubmissionStore) -> None:
    execution_id = submit(admit(PLAN), store, trace_parent=CALLER)
    submission = store.get(execution_id)
    assert submission is not None and submission.traceparent is not None
    stored = traceparent_ids(submission.traceparent)
    assert stored[0] == CALLER_TRACE and stored[1] != CALLER_SPAN
    status = execution_status(MemoryRunRecords(), store, execution_id)
    assert status.to_wire()["traceId"] == CALLER_TRACE
    assert ExecutionStatus.from_wire(status.to_wire()) == status

    # The plan sensor's run carries it, and the status of that run says the same trace.
    [request] = evaluate_submissions_for(store)
    assert request.tags[TRACEPARENT_TAG] == submission.traceparent
    records = MemoryRunRecords()
    run = records.add_run(execution_id, PLAN, RunState.STARTED)
    records.runs[-1] = dataclasses.replace(run, tags=dict(request.tags))
    assert execution_status(records, store, execution_id).trace_id == CALLER_TRACE

    # Without a (valid) traceparent: a new trace per execution.
    others = [submit(admit(PLAN), store, trace_parent=value) for value in (None, "00-bogus-01")]
    traces = {execution_status(MemoryRunRecords(), store, other).trace_id for other in others}
    assert len(traces) == 2 and CALLER_TRACE not in traces and all(len(t or "") == 32 for t in traces)


def evaluate_submissions_for(store: SubmissionStore) -> list[dg.RunRequest]:
    with dg.DagsterInstance.ephemeral() as instance:
        return evaluate_submissions(store, instance).run_requests


def test_the_status_of_a_direct_run_names_the_trace_of_its_run_id() -> None:
    records = MemoryRunRecords()
    run_id = str(uuid.uuid4())
    records.add_run(run_id, PLAN, RunState.STARTED, run_id=run_id)
    assert execution_status(records, None, run_id).trace_id == run_id.replace("-", "")


# --- real executions, in this process and its step processes --------------------------------------


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    collector = OtlpCollector().start()
    yield collector
    collector.stop()


receiver = pytest.fixture(name="receiver")(running_receiver)


@pytest.fixture
def replicate(clip: bytes) -> Iterator[FakeReplicate]:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replicate: FakeReplicate) -> Iterator[client.Deployment]:
    """An embedded (SQLite) deployment whose runs may call the local Replicate and post to 127.0.0.1."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("VIDEO_PIPELINES_STORAGE_URL", raising=False)
    monkeypatch.delenv("VIDEO_PIPELINES_DATABASE_URL", raising=False)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_API_BASE_URL", replicate.base_url)
    with client.deployment() as opened:
        yield opened


@pytest.fixture
def traced(collector: OtlpCollector, monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpCollector]:
    """Tracing on, in this process and the processes it starts, towards `collector`."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    yield collector
    tracing().shutdown()  # exports what is left while the collector still listens


MULTIPROCESS = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}


def run_with_steps_in_processes(target: client.Deployment, request: dg.RunRequest) -> dg.DagsterRun:
    """The run of a plan sensor's request, each step in its own process (Dagster's multiprocess executor)."""
    run_config = request.run_config
    config = {**(run_config if isinstance(run_config, dict) else run_config.to_config_dict()), **MULTIPROCESS}
    with dg.execute_job(
        dg.reconstructable(execute_plan_job), target.instance, run_config=config, tags=request.tags
    ) as result:
        assert result.success, [event.message for event in result.all_events if event.is_failure]
        run = target.instance.get_run_by_id(result.run_id)
    assert run is not None
    return run


def test_an_execution_is_one_trace_from_the_caller_to_the_provider_and_the_receiver(
    traced: OtlpCollector,
    target: client.Deployment,
    receiver: WebhookReceiver,
    replicate: FakeReplicate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_PARKING", "off")  # one run, no daemon to continue it (e2e: test_tracing)
    execution_id = submit(admit(provider_plan(receiver.url("/hook"))), target.store, trace_parent=CALLER)
    submission = target.store.get(execution_id)
    assert submission is not None and submission.traceparent is not None
    execution_span = traceparent_ids(submission.traceparent)[1]
    [request] = evaluate_submissions(target.store, target.instance).run_requests
    run = run_with_steps_in_processes(target, request)
    with run_event(target, run.run_id, dg.DagsterEventType.RUN_SUCCESS) as context:
        webhook_on_completed(context)  # sends the webhook, then records the execution's span

    status = client.status(execution_id, target=target)
    assert status["status"] == "completed" and status["traceId"] == CALLER_TRACE
    spans = traced.wait_for(has("submit", "execution", "node gen", "node square", "webhook completed"),
                            trace_id=CALLER_TRACE)  # fmt: skip
    named = by_name(spans)
    assert all(span.trace_id == CALLER_TRACE for span in spans)
    assert {span.service for span in spans} == {"video-pipelines"}

    # The submission: a child of the caller's span, linked to the execution's.
    [submitted] = named["submit"]
    assert submitted.parent_span_id == CALLER_SPAN and submitted.links == [(CALLER_TRACE, execution_span)]
    assert submitted.attributes["video_pipelines.execution_id"] == execution_id

    # The execution: the span id fixed at submission, from submission to the run's end, ok.
    [execution] = named["execution"]
    assert execution.span_id == execution_span and execution.parent_span_id == CALLER_SPAN and execution.is_ok
    assert execution.attributes["video_pipelines.execution_id"] == execution_id
    assert execution.attributes["video_pipelines.run_id"] == run.run_id
    assert (
        execution.attributes["video_pipelines.status"] == "completed" and "run started (attempt 1)" in execution.events
    )

    # One span per node, each a child of the execution's, recorded in the node's own step process.
    nodes = [span for span in spans if span.name.startswith("node ")]
    assert sorted(span.name for span in nodes) == ["node gen", "node square"]
    for node in nodes:
        assert node.parent_span_id == execution_span
        assert execution.start_ns <= node.start_ns <= node.end_ns <= execution.end_ns
        assert node.attributes["video_pipelines.execution_id"] == execution_id
        assert node.attributes["video_pipelines.reused"] is False
    [gen] = named["node gen"]
    assert gen.attributes["video_pipelines.provider"] == "replicate"
    assert gen.attributes["video_pipelines.operation"] == "generateVideo"
    assert named["node square"][0].attributes["video_pipelines.provider"] == "local"

    # Each provider request: a CLIENT span under the node's, whose traceparent the provider received.
    calls = [span for span in spans if span.name.startswith("replicate ")]
    assert len(calls) >= 3  # create, poll until done
    assert all(span.parent_span_id == gen.span_id and span.kind == CLIENT_KIND for span in calls)
    sent = [traceparent_ids(seen.headers["traceparent"]) for seen in replicate.requests if seen.kind != "file"]
    assert sent and {trace for trace, _ in sent} == {CALLER_TRACE}
    assert {parent for _, parent in sent} <= {span.span_id for span in calls}
    assert "Authorization" not in json.dumps([span.attributes for span in calls])

    # The webhook: a CLIENT span under the execution's; the receiver's request names it.
    [hook] = named["webhook completed"]
    assert hook.parent_span_id == execution_span and hook.attributes["http.response.status_code"] == 200
    [delivered] = receiver.wait_for("/hook", 1)
    assert traceparent_ids(delivered.headers["traceparent"]) == (CALLER_TRACE, hook.span_id)


def test_a_variant_traces_its_reused_nodes_too(
    traced: OtlpCollector, target: client.Deployment, receiver: WebhookReceiver, forkserver: None
) -> None:
    base = local_plan(receiver.url("/base"))
    with dg.execute_job(dg.reconstructable(execute_plan_job), target.instance, run_config=_config(base)) as result:
        assert result.success
        base_run_id = result.run_id
    # Only `b` changes: `a` is reused from the base, `b` and the merge run again.
    b = {**base["jobs"][1], "params": {**base["jobs"][1]["params"], "prompt": "Hook B, again"}}
    variant = {"baseExecutionId": base_run_id, "jobs": [base["jobs"][0], b, base["jobs"][2]]}
    with dg.execute_job(dg.reconstructable(execute_plan_job), target.instance, run_config=_config(variant)) as result:
        assert result.success
        variant_run_id = result.run_id
    trace_id = variant_run_id.replace("-", "")
    spans = traced.wait_for(has("node a", "node b", "node ab"), trace_id=trace_id)
    parent = derived_context(variant_run_id).span_id_hex
    named = by_name(spans)
    assert {name: len(found) for name, found in named.items() if name.startswith("node ")} == {
        "node a": 1, "node b": 1, "node ab": 1
    }  # fmt: skip
    assert all(span.parent_span_id == parent for found in named.values() for span in found)
    assert named["node a"][0].attributes["video_pipelines.reused"] is True
    assert named["node a"][0].attributes["video_pipelines.reused_from"] == base_run_id
    assert named["node ab"][0].attributes["video_pipelines.reused"] is False
    # The base is its own trace: a direct run's trace is its run id.
    base_spans = traced.wait_for(has("node a", "node b", "node ab"), trace_id=base_run_id.replace("-", ""))
    assert all(span.attributes["video_pipelines.reused"] is False for span in base_spans)


def _config(plan: dict[str, Any]) -> dict[str, Any]:
    """Steps in processes forked from a forkserver (spawned ones: `run_with_steps_in_processes`)."""
    multiprocess = {"multiprocess": {"max_concurrent": 2, **FORKSERVER}}
    return {"ops": {"plan": {"config": plan}}, "execution": {"config": multiprocess}}


def test_a_failed_node_is_an_error_span(
    traced: OtlpCollector, target: client.Deployment, monkeypatch: pytest.MonkeyPatch, forkserver: None
) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    plan = {"jobs": [{"id": "bad", "type": "generateVideo", "params": {"prompt": "x", "provider": "fal"}}]}
    with dg.execute_job(dg.reconstructable(execute_plan_job), target.instance, run_config=_config(plan)) as result:
        assert not result.success
        run_id = result.run_id
    [bad] = traced.wait_for(has("node bad"), trace_id=run_id.replace("-", ""))
    assert bad.is_error and "FAL_KEY" in bad.status_message
    assert bad.parent_span_id == derived_context(run_id).span_id_hex


def test_a_resumed_execution_exports_its_span_once_as_a_child_of_the_callers_span(
    traced: OtlpCollector, target: client.Deployment, voice: MediaServer, quick_retries: None
) -> None:
    resumed, retried = resumed_and_retried(target, voice, trace_parent=CALLER)
    assert tracing().flush()  # every span recorded so far has reached the collector
    spans = traced.received(CALLER_TRACE)
    executions = {span.attributes["video_pipelines.execution_id"]: span for span in by_name(spans)["execution"]}
    assert len(by_name(spans)["execution"]) == 2 == len(executions)  # one each, though each end was seen twice

    for execution_id in (resumed, retried):
        submission = target.store.get(execution_id)
        assert submission is not None and submission.traceparent is not None
        span = executions[execution_id]
        assert (span.trace_id, span.span_id) == traceparent_ids(submission.traceparent)
        assert span.parent_span_id == CALLER_SPAN
    # Recorded when the resumed run completed it, not when its first run lost its worker.
    completed = executions[resumed]
    assert completed.is_ok and completed.attributes["video_pipelines.status"] == "completed"
    assert completed.events == ["run started (attempt 1)", "run started (attempt 2)"]
    assert completed.attributes["video_pipelines.attempts"] == 2
    # A retried execution's span is its first end; the retry's nodes are children of it all the same.
    failed = executions[retried]
    assert failed.is_error and failed.attributes["video_pipelines.status"] == "failed"
    nodes = [span for span in spans if span.name == "node voice" and span.attributes["video_pipelines.attempt"] == 2]
    assert {span.parent_span_id for span in nodes} == {completed.span_id, failed.span_id}


SERVER_KIND = 2  # Span.SpanKind.SPAN_KIND_SERVER


def test_an_api_request_is_a_server_span_showing_no_secret(
    traced: OtlpCollector,
    make_api: ApiFactory,  # noqa: F811  (the fixture imported from test_api)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even an operator who asks the instrumentation to capture every header gets no key or signature value.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    api = make_api()
    acme = api.key()
    secret = "whsec-not-for-traces"
    plan = {**PLAN, "webhook": {"url": "https://hooks.example.com/x", "secret": secret}}
    response = api.client.post("/api/execute", json=plan, headers={**acme, "traceparent": CALLER})
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    assert api.client.get(f"/api/execute/{execution_id}/status", headers=acme).status_code == 200
    assert api.client.get("/api/execute/exec_nope/status", headers=acme).status_code == 404

    named = by_name(traced.wait_for(has("POST /api/execute", "submit"), trace_id=CALLER_TRACE))
    [server] = named["POST /api/execute"]
    assert server.kind == SERVER_KIND and server.parent_span_id == CALLER_SPAN  # the caller's request continues
    assert server.attributes["http.route"] == "/api/execute" and server.attributes["http.status_code"] == 202
    assert "[REDACTED]" in str(server.attributes["http.request.header.authorization"])
    # The submission is a child of the request's span; the execution's span will be a child of the caller's.
    [submitted] = named["submit"]
    assert submitted.parent_span_id == server.span_id
    assert ExecutionOutcomes(api.store).parent_span_id(execution_id) == CALLER_SPAN

    # Every request gets one, named by its route (the template, not the id), its status as it was answered.
    statuses = traced.wait_for(lambda spans: len(by_name(spans).get("GET /api/execute/{execution_id}/status", [])) == 2)
    found = {
        span.attributes["http.status_code"] for span in by_name(statuses)["GET /api/execute/{execution_id}/status"]
    }
    assert found == {200, 404}
    assert all(span.kind == SERVER_KIND for span in by_name(statuses)["GET /api/execute/{execution_id}/status"])
    key = acme["Authorization"].removeprefix("Bearer ")
    exported = json.dumps([span.attributes for span in traced.received()], default=str)
    assert key not in exported and secret not in exported


class BrokenStore:
    """A submission store whose database is gone."""

    def get(self, execution_id: str) -> None:
        raise ConnectionError("the database is down")

    @property
    def engine(self) -> None:
        raise ConnectionError("the database is down")

    reader = engine


def test_recording_a_span_never_fails_what_it_observes(traced: OtlpCollector, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        record_end_quietly(MemoryRunRecords(), BrokenStore(), "exec_gone")  # type: ignore[arg-type]
    assert "record_end_quietly failed; no span recorded" in caplog.text and "the database is down" in caplog.text


# --- tracing off ------------------------------------------------------------------------------------


def test_without_an_endpoint_nothing_is_configured_or_sent_yet_webhooks_carry_the_trace(
    collector: OtlpCollector, target: client.Deployment, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing().provider is None and not tracing().enabled
    execution_id = submit(admit(local_plan(receiver.url("/off"))), target.store, trace_parent=CALLER)
    [request] = evaluate_submissions(target.store, target.instance).run_requests
    result = execute_plan_job().execute_in_process(
        run_config=request.run_config, instance=target.instance, tags=request.tags, raise_on_error=False
    )
    assert result.success
    with run_event(target, result.run_id, dg.DagsterEventType.RUN_SUCCESS) as context:
        webhook_on_completed(context)
    [delivered] = receiver.wait_for("/off", 1)
    submission = target.store.get(execution_id)
    assert submission is not None and submission.traceparent is not None
    # No span of its own: the webhook names the execution's span, in the caller's trace.
    assert delivered.headers["traceparent"] == submission.traceparent
    assert traceparent_ids(delivered.headers["traceparent"])[0] == CALLER_TRACE
    time.sleep(0.5)
    assert collector.posts == 0
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("OtelBatch") and thread.is_alive()]


def test_tracing_off_imports_no_sdk_and_starts_no_thread() -> None:
    script = """
import json, sys, threading
from video_pipelines.telemetry.tracing import http_client_span, span_in, tracing
from video_pipelines.telemetry.trace_context import parse_traceparent
parent = parse_traceparent(sys.argv[1])
with span_in(parent, "node x"):
    with http_client_span("replicate POST", "POST", "https://api.example.com/v1") as span:
        headers = span.headers
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))
print(json.dumps({"enabled": tracing().enabled, "headers": headers, "loaded": loaded, "threads": threading.active_count()}))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script, CALLER], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen == {"enabled": False, "headers": {"traceparent": CALLER}, "loaded": [], "threads": 1}


def test_the_standard_variables_turn_tracing_on_and_off() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    for environ, enabled in (
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        (endpoint, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({**endpoint, "OTEL_SDK_DISABLED": "true"}, False),
        ({**endpoint, "OTEL_TRACES_EXPORTER": "none"}, False),
    ):
        made = Tracing.from_env(environ)
        try:
            assert made.enabled is enabled, environ
        finally:
            made.shutdown()
    named = Tracing.from_env({**endpoint, "OTEL_SERVICE_NAME": "video-api-eu"})
    try:
        assert named.provider is not None
        assert named.provider.resource.attributes["service.name"] == "video-api-eu"
    finally:
        named.shutdown()


# --- end to end: a real daemon on PostgreSQL --------------------------------------------------------
