"""Spend caps (`maxCostUsd`) and savings (`savedUsd`): at admission, before a paid node mid-run, after reuse."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.doors import client
from video_pipelines.errors import PlanValidationError, SpendCapExceeded
from video_pipelines.executions import NodeRecord, RunState, admit, execution_status, webhook_payload
from video_pipelines.executions.spending import check_node_spend, saved_usd, spent_so_far
from video_pipelines.operations import generate_clip
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.sensors.plans import evaluate_submissions
from video_pipelines.plan import parse_plan
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.plan.params import Operation, parse_params
from video_pipelines.providers.pricing import DEFAULT_MODELS, PRICING_FILE_ENV, PricingTable
from video_pipelines.submissions import ApiKeys
from video_pipelines.vocabulary import NodeState

from ..memory_records import MemoryRunRecords, video
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate, serving_replicate
from .harness import run_plan_in_process

KLING = "kwaivgi/kling-v1.6-standard"  # the default Replicate model: $0.05/s by default


def generate(node_id: str, duration: int = 5, *, provider: str = "replicate", **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "generateVideo",
        "params": {"prompt": node_id, "duration": duration, "provider": provider, **params},
    }


# --- admission -------------------------------------------------------------------------------


def test_a_plan_over_its_cap_is_refused_with_the_estimate_and_the_cap() -> None:
    plan = {"jobs": [generate("a", 5), generate("b", 3), generate("c", 4, provider="local")], "maxCostUsd": 0.3}
    with pytest.raises(PlanValidationError) as raised:
        admit(plan)
    [problem] = raised.value.problems
    # 8 s of kling at $0.05/s; the local node costs nothing.
    assert problem.startswith("plan.maxCostUsd: the estimated cost $0.4 exceeds the cap $0.3 (a $0.25, b $0.15)")
    assert admit({**plan, "maxCostUsd": 0.4}).plan.max_cost_usd == 0.4  # at the cap is allowed


def test_a_capped_plan_with_a_node_of_unknown_price_is_refused_naming_the_node() -> None:
    plan = {"jobs": [generate("a", 2), generate("mystery", 2, model="acme/unpriced")], "maxCostUsd": 100}
    with pytest.raises(PlanValidationError) as raised:
        admit(plan)
    [problem] = raised.value.problems
    assert problem.startswith("plan.maxCostUsd: the cost of mystery is unknown")
    assert "VIDEO_PIPELINES_PRICING_FILE" in problem
    admit({"jobs": plan["jobs"]})  # without a cap, an unpriced model is allowed (validate says "unknown")


def test_admission_prices_with_the_pricing_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"replicate": {KLING: {"per_call": 2.0}}}))
    plan = {"jobs": [generate("a", 5)], "maxCostUsd": 1.0}
    admit(plan, pricing=PricingTable())  # $0.25 at the defaults
    with pytest.raises(PlanValidationError, match=r"estimated cost \$2 exceeds the cap \$1 "):
        admit(plan, pricing=PricingTable.from_file(prices))


def test_a_variant_is_capped_on_what_it_runs_not_on_what_it_reuses() -> None:
    base_plan = {
        "jobs": [
            generate("a", 10),
            {"id": "sq", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["a"]},
        ]
    }
    records = MemoryRunRecords()
    base_lineage = admit(base_plan).resolved.lineage  # type: ignore[union-attr]
    records.add_run(
        "exec_base",
        base_plan,
        RunState.SUCCESS,
        nodes=[
            NodeRecord("a", "generateVideo", NodeState.COMPLETED, base_lineage["a"], video("a", 10), cost_usd=0.5),
            NodeRecord("sq", "reframe", NodeState.COMPLETED, base_lineage["sq"], video("sq", 10)),
        ],
    )
    variant = {
        "jobs": [*base_plan["jobs"], generate("b", 2)],
        "baseExecutionId": "exec_base",
        "maxCostUsd": 0.2,
    }
    # Without the base's records (a submit) the variant is stored; the plan sensor admits it with them.
    assert admit(variant).resolved is None
    assert admit(variant, records).resolved is not None  # only b runs: $0.10
    with pytest.raises(PlanValidationError, match=r"estimated cost \$0.1 exceeds the cap \$0.05"):
        admit({**variant, "maxCostUsd": 0.05}, records)


def test_the_cli_refuses_a_plan_over_its_cap_and_stores_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"jobs": [generate("a", 10)], "maxCostUsd": 0.25}))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("VIDEO_PIPELINES_DATABASE_URL", None)
    env.pop("VIDEO_PIPELINES_API_URL", None)
    done = subprocess.run(
        ["video-pipelines", "submit", str(plan)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "plan.maxCostUsd: the estimated cost $0.5 exceeds the cap $0.25" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# --- before each paid node -------------------------------------------------------------------


def test_a_paid_node_is_refused_when_the_spend_so_far_plus_its_estimate_exceeds_the_cap() -> None:
    plan = parse_plan({"jobs": [generate("a", 1), generate("b", 2)], "maxCostUsd": 0.12})
    node = plan.node("b")
    params = parse_params(node.operation, node.params)
    pricing = PricingTable()
    check_node_spend(plan, node, params=params, inputs=[], spent=0.02, pricing=pricing)  # 0.02 + 0.10 = the cap
    with pytest.raises(SpendCapExceeded) as raised:
        check_node_spend(plan, node, params=params, inputs=[], spent=0.05, pricing=pricing)
    assert str(raised.value) == (
        "spend cap: b not started: $0.05 spent so far + its estimate $0.1 would exceed the cap $0.12 (maxCostUsd)"
    )
    local = parse_plan({"jobs": [generate("l", 60, provider="local")], "maxCostUsd": 0.01})
    check_node_spend(local, local.node("l"), params=parse_params(local.node("l").operation, local.node("l").params),
                     inputs=[], spent=5.0, pricing=pricing)  # fmt: skip


def test_the_spend_so_far_counts_completed_nodes_and_those_started_ahead_not_yet_recorded() -> None:
    plan = parse_plan({"jobs": [generate("a", 1), generate("b", 1), generate("c", 1)], "maxCostUsd": 10})
    recorded = {
        "a": NodeRecord("a", "generateVideo", NodeState.COMPLETED, "l", video("a", 1), cost_usd=0.7),
        "r": NodeRecord("r", "generateVideo", NodeState.REUSED, "l", video("r", 1), cost_usd=0.9),
    }
    # b's video is known (it finished ahead of its step) but not recorded: priced for its 4 s video.
    spent = spent_so_far(plan, recorded, {"a": video("a", 1), "b": video("b", 4)}, PricingTable())
    assert spent == pytest.approx(0.7 + 4 * 0.05)


def test_speech_captioned_by_a_provider_ahead_of_its_step_counts_in_the_spend_so_far() -> None:
    subs = {"id": "s", "type": "addSubtitles", "params": {"language": "de", "provider": "fal"}, "dependsOn": ["a"]}
    plan = parse_plan({"jobs": [generate("a", 1), subs], "maxCostUsd": 10})
    pricing = PricingTable()
    model = DEFAULT_MODELS[(Operation.ADD_SUBTITLES, "fal")]
    spent = spent_so_far(plan, {}, {"s": video("s", 8)}, pricing)
    assert spent == pytest.approx(pricing.cost("fal", model, 8)) and spent > 0


@pytest.fixture
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 3 s clip: the provider serves it whatever duration it was asked for (a longer clip is billed)."""
    path = tmp_path_factory.mktemp("long") / "clip.mp4"
    generate_clip(path, prompt="served", width=160, height=90, duration=3, seed=1)
    return path.read_bytes()


@pytest.fixture
def replicate(long_clip: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeReplicate]:
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"replicate:\n  {KLING}: {{per_second: 1.0}}\n")
    monkeypatch.setenv(PRICING_FILE_ENV, str(prices))
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=long_clip, polls_to_finish=1)
    with serving_replicate(api, monkeypatch):
        yield api


def test_a_paid_node_past_the_cap_fails_before_its_provider_job_starts(
    dagster_home: Path, replicate: FakeReplicate
) -> None:
    # Estimated 1 s + 1 s at $1/s = $2 <= $2.5; but the first clip comes back 3 s long ($3).
    plan = {
        "jobs": [generate("first", 1), {**generate("second", 1), "dependsOn": ["first"]}],
        "maxCostUsd": 2.5,
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        status = execution_status(DagsterRunRecords(instance), None, result.run_id)
    assert not result.success
    assert len(replicate.seen("create")) == 1  # nothing started for the second node
    assert status.nodes["first"].state is NodeState.COMPLETED and status.nodes["first"].cost_usd == 3.0
    assert status.nodes["second"].state is NodeState.FAILED
    assert status.error == (
        "second (generateVideo) failed: spend cap: second not started: $3 spent so far + its estimate $1 "
        "would exceed the cap $2.5 (maxCostUsd)"
    )
    assert status.cost_usd == 3.0


# --- savedUsd --------------------------------------------------------------------------------


def test_saved_usd_of_a_variant_is_the_list_price_of_what_it_reused(
    dagster_home: Path, replicate: FakeReplicate
) -> None:
    base = {
        "jobs": [
            generate("gen", 2),
            {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        first = run_plan_in_process(base, instance)
        assert first.success
        records = DagsterRunRecords(instance)
        assert execution_status(records, None, first.run_id).saved_usd == 0.0
        variant = {
            "jobs": [
                *base["jobs"],
                {"id": "sub", "type": "addSubtitles", "params": {"text": "hi"}, "dependsOn": ["square"]},
            ],
            "baseExecutionId": first.run_id,
        }
        second = run_plan_in_process(variant, instance)
        assert second.success
        status = execution_status(records, None, second.run_id)
    assert status.nodes["gen"].state is NodeState.REUSED and status.nodes["square"].state is NodeState.REUSED
    # gen's estimate: 2 s at the file's $1/s (the 3 s the provider served cost the base $3); reframe is free.
    assert status.saved_usd == 2.0 and status.cost_usd == 0.0
    assert status.to_wire()["savedUsd"] == 2.0
    assert webhook_payload(status)["savedUsd"] == 2.0
    assert len(replicate.seen("create")) == 1


def test_saved_usd_counts_reused_nodes_at_their_estimate() -> None:
    plan = parse_plan(
        {
            "jobs": [
                generate("g", 4),
                {"id": "ls", "type": "lipSync", "params": {"audioUrl": "https://x/a.mp3", "provider": "replicate"},
                 "dependsOn": ["g"]},
                generate("new", 1),
            ]
        }
    )  # fmt: skip
    recorded = {
        "g": NodeRecord("g", "generateVideo", NodeState.REUSED, "l", video("g", 5), reused_from="exec_b"),
        "ls": NodeRecord("ls", "lipSync", NodeState.REUSED, "l", video("ls", 5), reused_from="exec_b"),
        "new": NodeRecord("new", "generateVideo", NodeState.COMPLETED, "l", video("new", 1), cost_usd=0.05),
    }
    # g: 4 s requested at $0.05/s; ls: 5 s of video at kling-lip-sync's $0.014/s; computed nodes save nothing.
    assert saved_usd(plan, recorded, PricingTable()) == pytest.approx(0.2 + 0.07)


OVER_CAP = "the estimated cost $1 exceeds the cap $0.5 (extra $1)"


def test_the_plan_sensor_rejects_a_variant_over_its_cap_once_its_base_is_known(
    dagster_home: Path, replicate: FakeReplicate
) -> None:
    base = {"jobs": [generate("gen", 2)]}
    with client.deployment() as target:
        first = run_plan_in_process(base, target.instance)
        assert first.success
        capped = {"jobs": [*base["jobs"], generate("extra", 1)], "maxCostUsd": 0.5, "timeoutSeconds": 60}
        # Its base is known at submit: refused at once; stored before its base ended, the sensor refuses it alike.
        with pytest.raises(PlanValidationError, match=re.escape(f"plan.maxCostUsd: {OVER_CAP}")):
            client.submit(capped, SubmitOptions(base_execution_id=first.run_id), target=target)
        variant_id = target.store.submit(capped, SubmitOptions(base_execution_id=first.run_id))[0].execution_id
        within_id = client.submit(
            {**capped, "maxCostUsd": 1.0}, SubmitOptions(base_execution_id=first.run_id), target=target
        )
        tick = evaluate_submissions(target.store, target.instance)
        status = client.status(variant_id, target=target)
    expected = f"plan.maxCostUsd: {OVER_CAP}"
    assert tick.rejected[variant_id].startswith(f"invalid plan: {expected}")
    assert status["status"] == "failed" and expected in status["error"]
    # Within its cap (gen is reused: only extra's $1 runs), launched with its deadline.
    [request] = tick.run_requests
    assert request.run_key == within_id and request.tags["dagster/max_runtime"] == "60"


def test_the_http_api_answers_a_plan_over_its_cap_with_a_422_naming_the_field(
    dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS", raising=False)
    app = create_app(ApiSettings())
    with TestClient(app) as http:
        _, key = ApiKeys(app.state.api.store).create("cap test", tenant="acme")
        plan = {"jobs": [generate("a", 10)], "maxCostUsd": 0.25}
        response = http.post("/api/execute", json=plan, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert (error["node"], error["field"]) == (None, "plan.maxCostUsd")  # a plan-level field, like plan.priority
        assert error["message"].startswith("the estimated cost $0.5 exceeds the cap $0.25")
        assert app.state.api.store.pending(10) == []  # nothing stored
