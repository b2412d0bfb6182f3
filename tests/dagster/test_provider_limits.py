"""Per-provider limits: a Dagster pool per provider name, its slots held by provider jobs from creation to end.

The limit is the deployment's (`dagster instance concurrency set replicate 1`); here it is set
on the test's instance, and the Replicate-protocol server on 127.0.0.1 records when each
prediction was created and when it ended.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.resources.provider_slots import DagsterProviderSlots, pool_limit
from video_pipelines.providers.context import limiting_provider_jobs, provider_slot
from video_pipelines.submissions import ProviderWaits, SubmissionStore

from ..media import local_path_of
from ..unit.test_providers_replicate_fal import TOKEN, serving_replicate
from .harness import node_results
from .test_remote_overlap import TimedReplicate, logs_of, remote_gen, run_plan


@pytest.fixture
def replicate(clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[TimedReplicate]:
    with serving_replicate(TimedReplicate(auth=f"Bearer {TOKEN}", output=clip, seconds=2.0), monkeypatch) as api:
        yield api


def a_run(instance: dg.DagsterInstance, priority: int = 0) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name="execute_plan", run_id=str(uuid.uuid4()), tags={"dagster/priority": str(priority)})
    instance.add_run(run)
    return run


def test_with_a_replicate_limit_of_one_two_remote_nodes_never_overlap(
    dagster_home: Path, replicate: TimedReplicate
) -> None:
    plan = {
        "jobs": [
            remote_gen("scene_1"),
            remote_gen("scene_2"),
            {"id": "final", "type": "merge", "params": {}, "dependsOn": ["scene_1", "scene_2"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("replicate", 1)
        result = run_plan(plan, instance)
        logs = logs_of(instance, result.run_id)
        assert result.success, logs
        info = instance.event_log_storage.get_concurrency_info("replicate")
    first, second = sorted(replicate.created_at, key=replicate.created_at.__getitem__)
    assert replicate.created_at[second] >= replicate.ended_at[first], "two predictions at once despite the limit"
    assert len(replicate.jobs) == 2
    assert "waiting for a slot of pool 'replicate' (at most 1 replicate job(s) at once)" in logs
    assert "got a slot of pool 'replicate' after" in logs
    assert info.active_slot_count == 0 and info.pending_step_count == 0  # every slot freed
    assert abs(probe(local_path_of(node_results(result)["final"].url)).duration - 2) < 0.2


def until(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_without_a_limit_a_provider_job_claims_nothing(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        assert pool_limit(instance, "replicate") is None
        slots = DagsterProviderSlots(instance, a_run(instance), step_key="node[gen]", log=pytest.fail)
        with slots.hold("replicate", resuming=False):
            assert instance.event_log_storage.get_concurrency_info("replicate").active_slot_count == 0


def test_a_slot_is_shared_by_every_run_and_freed_however_the_job_ends(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("fal", 1)
        first = DagsterProviderSlots(instance, a_run(instance), step_key="node[a]", log=pytest.fail)
        waited: list[str] = []
        other = DagsterProviderSlots(instance, a_run(instance), step_key="node[b]", log=waited.append)
        held_by_other = threading.Event()

        def other_job() -> None:
            with limiting_provider_jobs(other), provider_slot("fal", resuming=False):
                held_by_other.set()

        with pytest.raises(RuntimeError), first.hold("fal", resuming=False):
            thread = threading.Thread(target=other_job)
            thread.start()
            until(lambda: waited)  # it asked for the slot and was told to wait
            assert not held_by_other.is_set(), "another run's job got a slot while the only one was held"
            raise RuntimeError("the provider job failed")
        assert held_by_other.wait(5), "the slot was not freed when the job failed"
        thread.join(5)
        assert waited[0] == "waiting for a slot of pool 'fal' (at most 1 fal job(s) at once)"
        assert instance.event_log_storage.get_concurrency_info("fal").active_slot_count == 0


def test_a_parked_job_fills_its_pool_until_it_finishes_but_never_holds_back_its_own_collection(
    dagster_home: Path,
) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("replicate", 1)
        waits = ProviderWaits(SubmissionStore.shared())
        waits.park("replicate", "p-parked", execution_id="exec-1", node_id="gen", run_id="ended-run", check_in=5)
        waited: list[str] = []
        new = DagsterProviderSlots(instance, a_run(instance), step_key="node[new]", log=waited.append)
        got = threading.Event()

        def new_job() -> None:
            with new.hold("replicate", resuming=False):
                got.set()

        thread = threading.Thread(target=new_job)
        thread.start()
        until(lambda: waited)  # no run holds a slot, yet the parked job fills the pool
        assert not got.is_set()
        continuation = DagsterProviderSlots(instance, a_run(instance), step_key="node[gen]", log=lambda line: None)
        with continuation.hold("replicate", resuming=True):
            pass  # collecting the parked job itself is not held back
        assert not got.is_set()
        waits.finish("replicate", "p-parked")  # it ended at the provider: the pool has room again
        assert got.wait(5), "the new job still waits after the parked one finished"
        thread.join(5)
        assert instance.event_log_storage.get_concurrency_info("replicate").active_slot_count == 0


def test_a_resumed_job_gets_the_next_slot_before_new_ones(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("replicate", 1)
        holder = DagsterProviderSlots(instance, a_run(instance), step_key="node[a]", log=lambda line: None)
        order: list[str] = []
        waiting: list[str] = []

        def job(name: str, *, resuming: bool, priority: int) -> threading.Thread:
            run = a_run(instance, priority=priority)
            slots = DagsterProviderSlots(instance, run, step_key=f"node[{name}]", log=lambda line: waiting.append(name))

            def hold() -> None:
                with slots.hold("replicate", resuming=resuming):
                    order.append(name)

            thread = threading.Thread(target=hold)
            thread.start()
            return thread

        with holder.hold("replicate", resuming=False):
            new = job("new", resuming=False, priority=10)  # a high-priority run's new job, waiting first
            until(lambda: waiting == ["new"])
            resumed = job("resumed", resuming=True, priority=0)
            until(lambda: waiting == ["new", "resumed"])
        new.join(10)
        resumed.join(10)
    assert order == ["resumed", "new"]
