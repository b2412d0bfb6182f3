"""Content-addressed reuse across executions and single-flight, over a real submission store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from video_pipelines.executions import admit
from video_pipelines.nodes.cache import NodeWork, reuse_cached, single_flight
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.plan.reuse import Action, ResolvedPlan
from video_pipelines.providers.http import Parked
from video_pipelines.submissions import CachedNode, NodeResultIndex, SubmissionStore
from video_pipelines.submissions.waits import SAME_LINEAGE, follow_job_id

from ..memory_records import video

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 2}},
        {"id": "square", "type": "reframe", "params": {"aspectRatio": "1:1"}, "dependsOn": ["gen"]},
    ]
}
LINEAGE = "ab" * 32


def resolved(plan: dict[str, Any] = PLAN) -> ResolvedPlan:
    admission = admit(plan)
    assert admission.resolved is not None
    return admission.resolved


def work(
    execution_id: str, run_id: str, *, lineage: str = LINEAGE, cache: bool = True, tenant: str = "acme"
) -> NodeWork:
    return NodeWork(tenant, lineage, execution_id, "gen", "generateVideo", run_id, cache=cache)


class Computation:
    """A node's work that takes `seconds`, counting its calls; `fail_first` makes the first call raise."""

    def __init__(self, name: str, seconds: float = 0.0, *, fail_first: bool = False) -> None:
        self.name, self.seconds, self.fail_first = name, seconds, fail_first
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> NodeRun:
        with self._lock:
            self.calls += 1
            failing = self.fail_first and self.calls == 1
        time.sleep(self.seconds)
        if failing:
            raise RuntimeError("the provider said no")
        return NodeRun(video(self.name), provider="replicate", seconds=self.seconds, cost_usd=0.5)


def fly(store: SubmissionStore, node: NodeWork, compute: Computation, ended: set[str] | None = None) -> NodeRun:
    lines: list[str] = []
    return single_flight(
        NodeResultIndex(store),
        node,
        compute,
        run_has_ended=lambda run_id: run_id in (ended or set()),
        log=lines.append,
        sleep=time.sleep,
        poll_seconds=0.05,
    )


def test_a_computed_node_is_recorded_and_reused_by_the_next_execution(store: SubmissionStore) -> None:
    compute = Computation("fox")
    first = fly(store, work("exec_1", "run-1"), compute)
    assert (first.reused_from, compute.calls) == (None, 1)
    second = fly(store, work("exec_2", "run-2"), compute)
    assert (second.reused_from, second.result, second.cost_usd) == ("exec_1", first.result, 0.0)
    assert compute.calls == 1
    # Another tenant never sees it.
    assert fly(store, work("exec_3", "run-3", tenant="globex"), compute).reused_from is None
    assert compute.calls == 2


def test_cache_false_computes_anew_and_its_result_becomes_the_one_reused(store: SubmissionStore) -> None:
    fly(store, work("exec_1", "run-1"), Computation("first take"))
    fresh = fly(store, work("exec_2", "run-2", cache=False), Computation("second take"))
    assert fresh.reused_from is None and fresh.result == video("second take")
    assert fly(store, work("exec_3", "run-3"), Computation("never")).reused_from == "exec_2"


def test_a_recorded_result_whose_video_storage_lost_is_computed_again(store: SubmissionStore) -> None:
    first = fly(store, work("exec_1", "run-1"), Computation("first take"))
    lost = first.result.sha256
    again = single_flight(
        NodeResultIndex(store),
        work("exec_2", "run-2"),
        Computation("made again"),
        run_has_ended=lambda _run_id: False,
        log=lambda _line: None,
        sleep=time.sleep,
        stored=lambda result: result.sha256 != lost,
    )
    assert again.reused_from is None and again.result == video("made again")
    # Recorded in its place: the next execution reuses the video that exists.
    assert fly(store, work("exec_3", "run-3"), Computation("never")).reused_from == "exec_2"


def test_two_executions_at_once_compute_a_lineage_once(store: SubmissionStore) -> None:
    compute = Computation("shared", seconds=0.5)
    runs: dict[str, NodeRun] = {}

    def run(execution_id: str) -> None:
        runs[execution_id] = fly(store, work(execution_id, f"run-{execution_id}"), compute)

    threads = [threading.Thread(target=run, args=(f"exec_{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert compute.calls == 1
    [computed] = [execution_id for execution_id, done in runs.items() if done.reused_from is None]
    assert all(done.reused_from == computed for execution_id, done in runs.items() if execution_id != computed)
    assert len({done.result for done in runs.values()}) == 1


def test_a_waiting_execution_takes_over_when_the_first_fails(store: SubmissionStore) -> None:
    compute = Computation("retaken", seconds=0.3, fail_first=True)
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            fly(store, work("exec_1", "run-1"), compute)
        except RuntimeError as exc:
            outcome["exec_1"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    # exec_1 claims first (its computation takes 0.3 s, then fails): wait for its claim, not for a time.
    index = NodeResultIndex(store)
    while "exec_1" not in outcome and ((claim := index.claim_of("acme", LINEAGE)) is None or claim.run_id != "run-1"):
        assert thread.is_alive(), "exec_1 ended without claiming or failing"
        time.sleep(0.01)
    outcome["exec_2"] = fly(store, work("exec_2", "run-2"), compute)
    thread.join()
    assert isinstance(outcome["exec_1"], RuntimeError)
    done = outcome["exec_2"]
    assert isinstance(done, NodeRun) and done.reused_from is None and compute.calls == 2


def test_a_claim_whose_run_ended_without_a_result_is_taken_over(store: SubmissionStore) -> None:
    index = NodeResultIndex(store)
    index.claim("acme", LINEAGE, execution_id="exec_dead", node_id="gen", run_id="run-dead")  # its worker was lost
    compute = Computation("after the loss")
    done = fly(store, work("exec_2", "run-2"), compute, ended={"run-dead"})
    assert done.reused_from is None and compute.calls == 1
    assert index.find("acme", LINEAGE) is not None


def test_a_node_whose_lineage_waits_on_a_provider_job_elsewhere_parks_on_a_follow_instead_of_waiting(
    store: SubmissionStore,
) -> None:
    """The holder's node is parked on a provider job (its run ended): a node that may park gives its worker back
    at once, on a follow of the lineage; one that may not waits in its worker for the result, as it did before."""
    index = NodeResultIndex(store)
    index.claim("acme", LINEAGE, execution_id="exec_1", node_id="gen", run_id="run-1")
    compute, naps, lines = Computation("never"), [], []

    def holders_continuation_records_its_result(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            index.record(CachedNode("acme", LINEAGE, "exec_1", "gen", "generateVideo", "run-2", video("fox").to_wire()))

    def flight(*, may_park: bool) -> NodeRun:
        return single_flight(
            index,
            work("exec_2", "run-3"),
            compute,
            run_has_ended=lambda run_id: run_id == "run-1",
            log=lines.append,
            sleep=holders_continuation_records_its_result,
            parked=lambda holder: "replicate p-1" if holder.execution_id == "exec_1" else None,
            may_park=may_park,
        )

    with pytest.raises(Parked) as parked:
        flight(may_park=True)
    assert (parked.value.provider, parked.value.job_id) == (SAME_LINEAGE, follow_job_id(LINEAGE, "exec_2", "gen"))
    assert parked.value.shown == "replicate p-1", "the UI and the status name the job it really waits on"
    assert (compute.calls, naps) == (0, []), "no provider call, no wait in the worker"
    assert "waits on replicate p-1" in lines[-1]
    holder = index.claim_of("acme", LINEAGE)
    assert holder is not None and holder.execution_id == "exec_1", "the claim stays the holder's"

    waited = flight(may_park=False)
    assert (waited.reused_from, waited.result, compute.calls, len(naps)) == ("exec_1", video("fox"), 0, 3)


def test_admission_reuses_what_another_execution_completed(store: SubmissionStore) -> None:
    plan = resolved()
    index = NodeResultIndex(store)
    fly(store, work("exec_1", "run-1", lineage=plan.lineage["gen"]), Computation("fox"))
    again = reuse_cached(plan, index, "acme", "exec_2")
    decision = again.decisions["gen"]
    assert (decision.action, decision.reused_from, decision.result) == (Action.REUSE, "exec_1", video("fox"))
    assert [node.id for node in again.to_run] == ["square"]
    # Its own records are an attempt's business, another tenant's are invisible, cache:false opts out.
    assert reuse_cached(plan, index, "acme", "exec_1").decisions["gen"].action is Action.RUN
    assert reuse_cached(plan, index, "globex", "exec_2").decisions["gen"].action is Action.RUN
    fresh = resolved({**PLAN, "jobs": [{**PLAN["jobs"][0], "cache": False}, PLAN["jobs"][1]]})
    assert reuse_cached(fresh, index, "acme", "exec_2").decisions["gen"].action is Action.RUN
    whole_plan_fresh = reuse_cached(resolved({**PLAN, "cache": False}), index, "acme", "exec_2")
    assert [node.id for node in whole_plan_fresh.to_run] == ["gen", "square"]


@pytest.mark.parametrize("value", ["no", 0, "false"])
def test_cache_must_be_a_boolean(value: object) -> None:
    from video_pipelines.errors import PlanValidationError

    with pytest.raises(PlanValidationError) as raised:
        admit({**PLAN, "jobs": [{**PLAN["jobs"][0], "cache": value}, PLAN["jobs"][1]]})
    assert raised.value.problems == [
        "gen.cache: must be true or false (false: compute it anew, never reuse an earlier result)"
    ]
