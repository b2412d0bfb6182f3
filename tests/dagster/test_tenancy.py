"""Tenancy (`executions.tenancy`, `submit(caller=)`, the base check) on in-memory run records and a real store.

Another tenant's execution is, to a tenant, exactly a missing one; an operator sees every tenant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from video_pipelines import executions
from video_pipelines.doors import client
from video_pipelines.errors import ExecutionNotFound, PlanValidationError, UsageError
from video_pipelines.executions import (
    OPERATOR,
    BaseReadiness,
    Caller,
    NodeRecord,
    RunState,
    admit,
    cancel_for,
    list_executions,
    status_for,
)
from video_pipelines.executions import tenancy as tenancy_module
from video_pipelines.orchestration.sensors.plans import evaluate_submissions
from video_pipelines.submissions import DEFAULT_TENANT, SubmissionState, SubmissionStore
from video_pipelines.vocabulary import NodeState

from ..memory_records import MemoryRunRecords, video

ACME = Caller("acme")
BETA = Caller("beta")
DEFAULT = Caller(DEFAULT_TENANT)  # an API key of the default tenant: not an operator

PLAN: dict[str, Any] = {
    "jobs": [
        {"id": "a", "type": "generateVideo", "params": {"prompt": "one", "duration": 2}},
        {"id": "m", "type": "merge", "params": {}, "dependsOn": ["a"]},
    ]
}


def variant_of(base_id: str) -> dict[str, Any]:
    jobs = [*PLAN["jobs"], {"id": "r", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["m"]}]
    return {"jobs": jobs, "baseExecutionId": base_id}


@pytest.fixture
def records() -> MemoryRunRecords:
    return MemoryRunRecords()


def submit(
    store: SubmissionStore,
    caller: Caller,
    plan: dict[str, Any] = PLAN,
    records: MemoryRunRecords | None = None,
    **options: Any,
) -> str:
    """What a door does: admit as `caller` (the base looked up in `records`, or in none), then store."""
    admission = admit(plan, records or MemoryRunRecords(), store, tenant=caller.tenant)
    return executions.submit(admission, store, caller=caller, **options)


def complete(records: MemoryRunRecords, execution_id: str) -> None:
    """Give `execution_id` a successful run with a video for each node of PLAN."""
    resolved = admit(PLAN).resolved
    assert resolved is not None
    nodes = [
        NodeRecord(node_id, operation, NodeState.COMPLETED, resolved.lineage[node_id], video(node_id))
        for node_id, operation in (("a", "generateVideo"), ("m", "merge"))
    ]
    records.add_run(execution_id, PLAN, RunState.SUCCESS, nodes=nodes)


def not_found_message(caller: Caller, records: MemoryRunRecords, store: SubmissionStore, execution_id: str) -> str:
    with pytest.raises(ExecutionNotFound) as raised:
        status_for(caller, records, store, execution_id)
    return str(raised.value)


# --- status


def test_another_tenant_gets_not_found_exactly_as_for_a_missing_id(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    mine = submit(store, ACME)
    assert status_for(ACME, records, store, mine).execution_id == mine
    assert not_found_message(BETA, records, store, mine) == f"no execution {mine}"
    missing = "exec_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    assert not_found_message(BETA, records, store, missing) == f"no execution {missing}"
    assert not_found_message(ACME, records, store, missing) == f"no execution {missing}"
    assert not_found_message(DEFAULT, records, store, mine) == f"no execution {mine}"
    # Once it runs, the run's records do not make it anyone else's either.
    complete(records, mine)
    assert status_for(ACME, records, store, mine).state.value == "completed"
    assert not_found_message(BETA, records, store, mine) == f"no execution {mine}"


def test_the_operator_sees_every_tenant(records: MemoryRunRecords, store: SubmissionStore) -> None:
    acme, beta, own = submit(store, ACME), submit(store, BETA), submit(store, OPERATOR)
    for execution_id in (acme, beta, own):
        assert status_for(OPERATOR, records, store, execution_id).execution_id == execution_id
    assert store.get(own).tenant == DEFAULT_TENANT  # type: ignore[union-attr]
    assert store.get(acme).tenant == "acme"  # type: ignore[union-attr]
    assert not_found_message(OPERATOR, records, store, "exec_nope") == "no execution exec_nope"


def test_a_run_launched_directly_belongs_to_the_default_tenant(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    complete(records, "run-launched-in-the-ui")  # no submission: launched through Dagster's UI
    assert status_for(DEFAULT, records, store, "run-launched-in-the-ui").state.value == "completed"
    assert status_for(OPERATOR, records, store, "run-launched-in-the-ui").state.value == "completed"
    assert not_found_message(ACME, records, store, "run-launched-in-the-ui") == "no execution run-launched-in-the-ui"


# --- cancel


def test_another_tenant_cannot_cancel_a_pending_submission(records: MemoryRunRecords, store: SubmissionStore) -> None:
    mine = submit(store, ACME)
    with pytest.raises(ExecutionNotFound, match=rf"^no execution {mine}$"):
        cancel_for(BETA, records, store, mine)
    assert store.get(mine).state is SubmissionState.PENDING  # type: ignore[union-attr]
    assert cancel_for(ACME, records, store, mine).state.value == "canceled"
    assert store.get(mine).state is SubmissionState.CANCELED  # type: ignore[union-attr]


def test_another_tenant_cannot_terminate_a_run(records: MemoryRunRecords, store: SubmissionStore) -> None:
    mine = submit(store, ACME)
    store.mark_launched(mine, f"run-{mine}")
    records.add_run(mine, PLAN, RunState.STARTED)
    with pytest.raises(ExecutionNotFound):
        cancel_for(BETA, records, store, mine)
    with pytest.raises(ExecutionNotFound):
        cancel_for(BETA, records, store, "exec_missing")
    assert records.terminated == []
    cancel_for(ACME, records, store, mine)
    assert records.terminated == [f"run-{mine}"]


def test_the_operator_cancels_any_tenant(records: MemoryRunRecords, store: SubmissionStore) -> None:
    theirs = submit(store, BETA)
    assert cancel_for(OPERATOR, records, store, theirs).state.value == "canceled"
    with pytest.raises(ExecutionNotFound, match=r"^no execution exec_missing$"):
        cancel_for(OPERATOR, records, store, "exec_missing")


# --- bases


def test_a_tenant_cannot_use_another_tenants_execution_as_base(
    records: MemoryRunRecords, store: SubmissionStore
) -> None:
    theirs = submit(store, ACME)
    complete(records, theirs)
    missing = "exec_01JYYYYYYYYYYYYYYYYYYYYYYY"
    before = store.newest(None)
    refusals: dict[str, list[str]] = {}
    for base_id in (theirs, missing):
        with pytest.raises(PlanValidationError) as raised:
            submit(store, BETA, variant_of(base_id), records=records)
        refusals[base_id] = raised.value.problems
    assert refusals[theirs] == [f"plan.baseExecutionId: base execution {theirs} does not exist"]
    # Word for word what a missing base gets: the refusal does not say the id exists.
    assert refusals[missing] == [f"plan.baseExecutionId: base execution {missing} does not exist"]
    assert store.newest(None) == before  # nothing stored for a refused plan

    # Its own base, and the operator with anyone's, are accepted.
    assert store.get(submit(store, ACME, variant_of(theirs))).base_execution_id == theirs  # type: ignore[union-attr]
    assert store.get(submit(store, OPERATOR, variant_of(theirs))) is not None


def test_the_idempotency_key_does_not_bypass_the_base_check(records: MemoryRunRecords, store: SubmissionStore) -> None:
    theirs = submit(store, ACME)
    submit(store, BETA, idempotency_key="order-1")
    with pytest.raises(PlanValidationError, match="does not exist"):
        submit(store, BETA, variant_of(theirs), idempotency_key="order-1")


def test_the_operator_is_refused_a_missing_base_at_once_too(store: SubmissionStore) -> None:
    with pytest.raises(PlanValidationError, match="base execution exec_ghost does not exist"):
        submit(store, OPERATOR, variant_of("exec_ghost"))
    waiting = submit(store, OPERATOR, variant_of(submit(store, ACME)))  # a pending base is waited for
    assert store.get(waiting).state is SubmissionState.PENDING  # type: ignore[union-attr]


def test_a_direct_run_is_a_base_of_the_default_tenant_only(records: MemoryRunRecords, store: SubmissionStore) -> None:
    complete(records, "run-from-the-ui")
    accepted = submit(store, DEFAULT, variant_of("run-from-the-ui"), records=records)
    assert store.get(accepted).tenant == DEFAULT_TENANT  # type: ignore[union-attr]
    with pytest.raises(PlanValidationError, match="base execution run-from-the-ui does not exist"):
        submit(store, ACME, variant_of("run-from-the-ui"), records=records)
    # Without the run records a direct run cannot be told from a missing one: refused, never leaked.
    with pytest.raises(PlanValidationError, match="base execution run-from-the-ui does not exist"):
        submit(store, DEFAULT, variant_of("run-from-the-ui"))


def test_the_base_check_of_admission_knows_the_tenant(records: MemoryRunRecords, store: SubmissionStore) -> None:
    theirs = submit(store, ACME)
    complete(records, theirs)
    own = admit(variant_of(theirs), records, store, tenant="acme")
    assert own.base.readiness is BaseReadiness.READY and own.resolved is not None
    for base_id in (theirs, "exec_ghost"):
        with pytest.raises(PlanValidationError) as refused:
            admit(variant_of(base_id), records, store, tenant="beta")
        assert refused.value.problems == [f"plan.baseExecutionId: base execution {base_id} does not exist"]
    assert admit(variant_of(theirs), records, store).base.readiness is BaseReadiness.READY  # no tenant: anyone's


# --- idempotency


def test_an_idempotency_key_is_per_tenant(store: SubmissionStore) -> None:
    acme = submit(store, ACME, idempotency_key="order-42")
    beta = submit(store, BETA, idempotency_key="order-42")
    operator = submit(store, OPERATOR, idempotency_key="order-42")
    assert len({acme, beta, operator}) == 3
    assert submit(store, ACME, idempotency_key="order-42") == acme
    assert submit(store, BETA, idempotency_key="order-42") == beta
    assert submit(store, OPERATOR, idempotency_key="order-42") == operator
    assert submit(store, DEFAULT, idempotency_key="order-42") == operator  # the operator submits as the default tenant
    assert len(store.newest(None)) == 3


# --- listing


def test_a_tenant_lists_only_its_own_newest_first(records: MemoryRunRecords, store: SubmissionStore) -> None:
    acme = [submit(store, ACME) for _ in range(3)]
    beta = [submit(store, BETA) for _ in range(2)]
    operator = submit(store, OPERATOR)

    def listed(caller: Caller) -> list[str]:
        page, cursor = list_executions(caller, records, store, limit=100)
        assert cursor is None
        return [status.execution_id for status in page]

    assert listed(ACME) == acme[::-1]
    assert listed(BETA) == beta[::-1]
    assert listed(DEFAULT) == [operator]
    assert listed(OPERATOR) == [operator, *beta[::-1], *acme[::-1]]
    assert listed(Caller("nobody")) == []


def test_pages_follow_the_cursor_to_the_end(records: MemoryRunRecords, store: SubmissionStore) -> None:
    mine = [submit(store, ACME) for _ in range(5)]
    submit(store, BETA)
    seen: list[list[str]] = []
    cursor = None
    while True:
        page, cursor = list_executions(ACME, records, store, limit=2, cursor=cursor)
        seen.append([status.execution_id for status in page])
        if cursor is None:
            break
        assert cursor == page[-1].execution_id
    assert seen == [mine[4:2:-1], mine[2:0:-1], mine[:1]]
    # A page that is exactly full knows that nothing follows.
    page, cursor = list_executions(ACME, records, store, limit=5)
    assert len(page) == 5 and cursor is None


def test_the_status_filter_pages_over_what_it_skips(
    records: MemoryRunRecords, store: SubmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenancy_module, "_SCAN_BATCH", 2)  # so a page spans several reads of the store
    ids = [submit(store, ACME) for _ in range(8)]
    complete(records, ids[0])
    records.add_run(ids[1], PLAN, RunState.STARTED)
    store.mark_rejected(ids[2], "invalid plan: nope")
    cancel_for(ACME, records, store, ids[3])
    complete(records, ids[5])
    complete(records, ids[7])
    submit(store, BETA)  # another tenant's pending one is never counted

    def all_pages(status: str, limit: int) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page, cursor = list_executions(ACME, records, store, status=status, limit=limit, cursor=cursor)
            assert all(entry.state.value == status for entry in page) and len(page) <= limit
            found += [entry.execution_id for entry in page]
            if cursor is None:
                return found

    assert all_pages("completed", 1) == [ids[7], ids[5], ids[0]]
    assert all_pages("completed", 2) == [ids[7], ids[5], ids[0]]
    assert all_pages("pending", 1) == [ids[6], ids[4]]
    assert all_pages("processing", 10) == [ids[1]]
    assert all_pages("failed", 10) == [ids[2]]
    assert all_pages("canceled", 10) == [ids[3]]
    page, cursor = list_executions(ACME, records, store, status="completed", limit=3)
    assert [entry.execution_id for entry in page] == [ids[7], ids[5], ids[0]] and cursor is None


@pytest.mark.parametrize("status", ["running", "COMPLETED", "", "reused"])
def test_an_unknown_status_filter_is_refused(records: MemoryRunRecords, store: SubmissionStore, status: str) -> None:
    with pytest.raises(UsageError, match="status must be one of pending, processing, completed, failed, canceled"):
        list_executions(ACME, records, store, status=status)


@pytest.mark.parametrize("limit", [0, -1, 101, True])
def test_the_limit_is_1_to_100(records: MemoryRunRecords, store: SubmissionStore, limit: int) -> None:
    with pytest.raises(UsageError, match="limit must be an integer from 1 to 100"):
        list_executions(ACME, records, store, limit=limit)


# --- the plan sensor: the base check again, on a real instance


def test_the_sensor_rejects_a_variant_of_another_tenants_base(dagster_home: Path) -> None:
    with client.deployment() as target:
        store = target.store
        theirs = submit(store, ACME)
        # Stored without the submit-time check (as an older process or a direct write would).
        sneaked, _ = store.submit(variant_of(theirs), tenant="beta")
        ghost, _ = store.submit(variant_of("exec_ghost"), tenant="beta")
        own, _ = store.submit(variant_of(theirs), tenant="acme")
        operator = submit(store, OPERATOR, variant_of(theirs))
        tick = evaluate_submissions(store, target.instance)
    assert tick.rejected == {
        sneaked.execution_id: f"invalid plan: plan.baseExecutionId: base execution {theirs} does not exist",
        ghost.execution_id: "invalid plan: plan.baseExecutionId: base execution exec_ghost does not exist",
    }
    # Its own tenant and the operator wait for the pending base, as before.
    assert set(tick.waiting) == {own.execution_id, operator}
    assert [request.run_key for request in tick.run_requests] == [theirs]
