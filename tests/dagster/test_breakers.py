"""Provider fallbacks and circuit breakers in runs: a Replicate-protocol server in an outage (every create 503),
the circuits in the deployment's real submission store, runs `execute_in_process` on the embedded instance.

Nodes with a fallback complete on it; once the circuit is open, later nodes never call the dead provider; a node
with no fallback waits for the circuit, whose half-open probe closes it once the server is back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.api.health import open_circuits
from video_pipelines.executions import execution_status
from video_pipelines.executions.metrics import render_metrics
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.providers.replicate import DEFAULT_VIDEO_MODEL
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.breakers import CircuitState, ProviderCircuits

from ..unit.test_breakers import Outage
from ..unit.test_providers_replicate_fal import TOKEN, serving_replicate
from .harness import node_results
from .test_remote_overlap import logs_of, remote_gen, run_plan

LOCAL = [{"provider": "local"}]


@pytest.fixture
def outage(clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    monkeypatch.setenv("VIDEO_PIPELINES_BREAKER_FAILURES", "2")
    with serving_replicate(Outage(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=0), monkeypatch) as api:
        yield api


def materialized_provider(result: dg.ExecuteInProcessResult, node_id: str) -> str:
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        if metadata["node_id"].value == node_id:
            return str(metadata["provider"].value)
    raise AssertionError(f"no materialization of {node_id}")


def test_nodes_fall_back_and_an_open_circuit_keeps_later_nodes_off_the_dead_provider(
    dagster_home: Path, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_BREAKER_OPEN_SECONDS", "600")
    with dg.DagsterInstance.get() as instance:
        first = run_plan({"jobs": [remote_gen("first", fallbacks=LOCAL)]}, instance)
        assert first.success, logs_of(instance, first.run_id)
        made = node_results(first)["first"]
        assert (made.provider, made.fallback_from) == ("local", ("replicate",))
        assert outage.refused == 2, "two transient failures opened the circuit; the node moved on at once"
        assert "moving on to local" in logs_of(instance, first.run_id)

        later: dict[str, Any] = {
            "jobs": [
                remote_gen("a", fallbacks=LOCAL),
                remote_gen("b", fallbacks=[{"provider": "fal"}, {"provider": "local"}]),  # fal: not configured here
                {"id": "both", "type": "merge", "params": {}, "dependsOn": ["a", "b"]},
            ]
        }
        second = run_plan(later, instance)
        assert second.success, logs_of(instance, second.run_id)
        assert outage.refused == 2 and not outage.seen("status"), "no node of the second run called replicate"
        videos = node_results(second)
        assert videos["a"].to_wire()["fallbackFrom"] == ["replicate"] and videos["a"].to_wire()["provider"] == "local"
        assert videos["b"].fallback_from == ("replicate", "fal") and videos["b"].provider == "local"
        assert "provider" not in videos["both"].to_wire(), "a merge calls no provider"
        assert "replicate's circuit is open" in logs_of(instance, second.run_id)
        status = execution_status(DagsterRunRecords(instance), None, second.run_id).to_wire()
        assert status["jobs"]["b"]["result"]["fallbackFrom"] == ["replicate", "fal"]
        assert status["jobs"]["b"]["result"]["provider"] == "local"

        with SubmissionStore.from_env() as store:
            assert open_circuits(store) == {"replicate": "open"}
            metrics = render_metrics(store, DagsterRunRecords(instance)).decode()
    assert 'video_pipelines_provider_circuit_open{provider="replicate"} 1.0' in metrics


def test_a_node_without_fallback_waits_for_the_circuit_and_completes_after_recovery(
    dagster_home: Path, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_BREAKER_OPEN_SECONDS", "2")
    outage.up_after = 3  # two failures open the circuit; its first probe fails, reopening it; the next one passes
    with dg.DagsterInstance.get() as instance:
        result = run_plan({"jobs": [remote_gen("only")]}, instance)
        logs = logs_of(instance, result.run_id)
    assert result.success, logs
    assert materialized_provider(result, "only") == "replicate"
    assert logs.count("replicate's circuit is half-open: this call is its probe") == 2, logs
    assert outage.refused == 3 and len(outage.created_at) == 1
    opened, probed = outage.refused_at[1], outage.refused_at[2]
    assert probed - opened >= 2 and outage.created_at[0] - probed >= 2, "each probe waited for the open period"
    with SubmissionStore.from_env() as store:
        circuit = ProviderCircuits(store).get("replicate")
        assert circuit is not None and circuit.state is CircuitState.CLOSED
        assert open_circuits(store) == {}


def test_a_failed_job_that_the_provider_billed_counts_in_the_cost(
    dagster_home: Path, outage: Outage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outage.down, outage.outcome = False, "fail"  # the prediction is created, runs, and fails
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"replicate": {DEFAULT_VIDEO_MODEL: {"per_call": 0.25, "per_second": 0.05}}}))
    monkeypatch.setenv("VIDEO_PIPELINES_PRICING_FILE", str(prices))
    with dg.DagsterInstance.get() as instance:
        result = run_plan({"jobs": [remote_gen("gen", fallbacks=LOCAL)]}, instance)
        assert result.success, logs_of(instance, result.run_id)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
    [job_id] = list(outage.jobs)
    assert run.tags["video/provider_job/gen"] == f"0 replicate {job_id}", "the entry's own job, in the node's tag"
    [materialization] = [
        event.step_materialization_data.materialization for event in result.get_asset_materialization_events()
    ]
    # The failed prediction's per-call price (no video to bill by the second); local's own work is free.
    assert materialization.metadata["cost_usd"].value == 0.25
    assert materialization.metadata["provider"].value == "local"
