"""Fetches of stored videos and the "never fetched" suggestion: the fetch window that makes a client's range
requests one fetch, the fetch records on the store (SQLite here, PostgreSQL in tests/postgres), and the
suggestion computed from node spends and those records, with every reason it must not be made."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from video_pipelines.errors import StorageError
from video_pipelines.executions import costs
from video_pipelines.executions.costs import FetchRecords, NodeSpend
from video_pipelines.plan import parse_plan
from video_pipelines.storage.s3 import S3ArtifactStore
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.fetches import FetchWindow, VideoFetches
from video_pipelines.vocabulary import NodeState

API = "https://api.example.com/artifacts/"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
RECORDING = NOW - timedelta(days=30)
TWO_DAYS_AGO = (NOW - timedelta(days=2)).timestamp()


def sha(name: str) -> str:
    return name.encode().hex().ljust(64, "0")[:64]


def node(
    execution_id: str,
    node_id: str,
    *,
    cost: float = 0.0,
    sinks: tuple[str, ...] = ("final",),
    video: str | None = None,
    state: NodeState = NodeState.COMPLETED,
    completed_at: float | None = TWO_DAYS_AGO,
    url: str | None = None,
    tenant: str = "acme",
) -> NodeSpend:
    digest = sha(video or f"{execution_id}-{node_id}")
    return NodeSpend(
        execution_id, tenant, "2026-12-05", node_id, "generateVideo", "replicate", state, cost, 0.0, 2.0, digest,
        True, False,
        url=url if url is not None else f"{API}videos/{digest[:2]}/{digest}.mp4",
        sinks=sinks,
        completed_at=completed_at,
    )  # fmt: skip


def chain(execution_id: str, *, gen: float = 3.0, final: float = 0.0, **given: Any) -> list[NodeSpend]:
    """A paid generation feeding a free final step: the usual plan."""
    return [node(execution_id, "gen", cost=gen, **given), node(execution_id, "final", cost=final, **given)]


def records(*fetched: NodeSpend, **changes: Any) -> FetchRecords:
    made = FetchRecords(
        since=RECORDING,
        first_fetched={spend.sha256: NOW - timedelta(days=1) for spend in fetched},
        served=(API,),
        bases=frozenset(),
        now=NOW,
        grace_seconds=costs.DEFAULT_UNFETCHED_GRACE_SECONDS,
    )
    return replace(made, **changes)


def never_fetched(spends: list[NodeSpend], fetches: FetchRecords) -> list[tuple[str, float, list[str]]]:
    return [(s.kind, s.estimated_saving_usd, s.executions) for s in costs.suggestions(spends, fetches)]


# --- the suggestion ------------------------------------------------------------------------------


def test_only_the_execution_whose_final_video_nobody_fetched_is_suggested_with_its_paid_work() -> None:
    fetched, unfetched = chain("exec_1"), chain("exec_2", gen=2.5, final=0.5)
    [found] = costs.suggestions([*fetched, *unfetched], records(fetched[1]))
    assert (found.kind, found.estimated_saving_usd, found.executions) == ("neverFetched", 3.0, ["exec_2"])
    assert found.message.startswith("1 completed execution(s) of acme made 1 final video(s) that nobody has downloaded")
    assert "1 d or more after they completed: $3 of paid work" in found.message


def test_a_fetched_intermediate_video_does_not_make_its_execution_fetched() -> None:
    spends = chain("exec_1")
    assert never_fetched(spends, records(spends[0])) == [("neverFetched", 3.0, ["exec_1"])]


def test_nothing_is_suggested_without_evidence() -> None:
    spends = chain("exec_1")
    assert costs.suggestions(spends) == []  # no fetch records read
    assert never_fetched(spends, records(since=None)) == []  # fetches are not recorded
    assert never_fetched(spends, records(since=NOW - timedelta(days=1))) == []  # it ended before recording began
    assert never_fetched(spends, records(grace_seconds=3 * 86400)) == []  # still within its grace period
    assert never_fetched(spends, records(served=("https://cdn.example.com/",))) == []  # its URL is not ours
    assert never_fetched(spends, records(bases=frozenset({"exec_1"}))) == []  # a variant reads it from storage
    assert never_fetched(chain("exec_1", completed_at=None), records()) == []  # it did not complete
    assert never_fetched(chain("exec_1", gen=0.0), records()) == []  # free work saves nothing


def test_an_execution_with_a_final_video_behind_a_cdn_is_left_out_whole() -> None:
    spends = [
        node("exec_1", "gen", cost=2.0, sinks=("ours", "cdn")),
        node("exec_1", "ours", sinks=("ours",)),
        node("exec_1", "cdn", sinks=("cdn",), url="https://cdn.example.com/videos/ab/ab.mp4"),
    ]
    assert never_fetched(spends, records()) == []


def test_with_several_final_videos_only_the_work_that_went_into_unfetched_ones_alone_counts() -> None:
    spends = [
        node("exec_1", "gen", cost=2.0, sinks=("spanish", "french")),  # shared: the fetched one needed it
        node("exec_1", "spanish", cost=1.0, sinks=("spanish",)),
        node("exec_1", "french", cost=1.5, sinks=("french",)),
    ]
    assert never_fetched(spends, records(spends[1])) == [("neverFetched", 1.5, ["exec_1"])]
    [found] = costs.suggestions(spends, records())
    assert found.estimated_saving_usd == 4.5 and "made 2 final video(s)" in found.message


def test_a_video_another_execution_reused_was_used() -> None:
    base = chain("exec_1")
    reusing = [node("exec_2", "gen", state=NodeState.REUSED, video="exec_1-gen"), node("exec_2", "final", cost=1.0)]
    # exec_1's generation went on into exec_2's: only exec_1's free final step went unfetched (nothing to save).
    assert never_fetched([*base, *reusing], records()) == [("neverFetched", 1.0, ["exec_2"])]
    # The same, when the reusing execution is after the window read.
    assert never_fetched(base, records(taken_later=frozenset({sha("exec_1-gen")}))) == []


def test_the_same_bytes_made_twice_and_never_fetched_are_both_suggested() -> None:
    spends = [*chain("exec_1", final=1.0, video="same"), *chain("exec_2", final=1.0, video="same")]
    assert never_fetched(spends, records()) == [("neverFetched", 8.0, ["exec_1", "exec_2"])]
    assert never_fetched(spends, records(spends[1])) == []  # one fetch of those bytes serves both URLs


def test_an_operator_gets_one_suggestion_per_tenant() -> None:
    spends = [*chain("exec_1", gen=2.0), *chain("exec_2", tenant="globex"), *chain("exec_3", tenant="globex")]
    found = never_fetched(spends, records())
    assert found == [("neverFetched", 6.0, ["exec_2", "exec_3"]), ("neverFetched", 2.0, ["exec_1"])]


def test_each_node_knows_the_final_outputs_its_video_goes_into() -> None:
    plan = parse_plan(
        {
            "jobs": [
                {"id": "a", "type": "generateVideo", "params": {"prompt": "a"}},
                {"id": "b", "type": "generateVideo", "params": {"prompt": "b"}},
                {"id": "m", "type": "merge", "dependsOn": ["a", "b"]},
                {"id": "es", "type": "addSubtitles", "params": {"text": "hola"}, "dependsOn": ["m"]},
                {"id": "fr", "type": "addSubtitles", "params": {"text": "salut"}, "dependsOn": ["m"]},
                {"id": "alone", "type": "generateVideo", "params": {"prompt": "c"}},
            ]
        }
    )
    assert costs.sinks_fed(plan) == {
        "a": ("es", "fr"), "b": ("es", "fr"), "m": ("es", "fr"), "es": ("es",), "fr": ("fr",), "alone": ("alone",)
    }  # fmt: skip


# --- the fetch window ----------------------------------------------------------------------------


def test_a_clients_requests_within_the_window_are_one_fetch() -> None:
    now = [0.0]
    window = FetchWindow(60.0, max_entries=2, clock=lambda: now[0])
    assert window.take("v1", "10.0.0.1")
    now[0] = 59.0
    assert not window.take("v1", "10.0.0.1")  # the same viewing's range requests
    assert window.take("v1", "10.0.0.2") and window.take("v2", "10.0.0.1")  # another client, another video
    now[0] = 60.0
    assert window.take("v1", "10.0.0.1")  # the window passed: a new fetch
    window.forget("v1", "10.0.0.1")
    assert window.take("v1", "10.0.0.1")  # not recorded: taken again
    now[0] = 61.0
    window.take("v3", "10.0.0.1")  # a third pair: the oldest one remembered is forgotten
    assert window.take("v1", "10.0.0.2")


# --- the records -----------------------------------------------------------------------------------


def test_fetches_are_counted_per_video_from_their_first(store: SubmissionStore) -> None:
    fetches = VideoFetches(store)
    since = fetches.recording_since()
    assert since is not None and since <= datetime.now(UTC)
    first, later = datetime(2026, 12, 7, 9, 0, tzinfo=UTC), datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    fetches.record(sha("a"), first)
    fetches.record(sha("a"), later)
    fetches.record(sha("b"), later)
    found = fetches.of([sha("a"), sha("b"), sha("never")])
    assert set(found) == {sha("a"), sha("b")}
    assert (found[sha("a")].first_fetched_at, found[sha("a")].last_fetched_at, found[sha("a")].fetches) == (
        first,
        later,
        2,
    )
    assert found[sha("b")].fetches == 1 and fetches.get(sha("never")) is None
    many = [sha(f"v{i}") for i in range(1200)]  # more than one query's placeholders
    assert fetches.of(many) == {}


def test_the_executions_a_variant_names_as_its_base_are_found(store: SubmissionStore) -> None:
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "a"}}]}
    base, _ = store.submit(plan)
    other, _ = store.submit(plan)
    store.submit({**plan, "baseExecutionId": base.execution_id})
    assert VideoFetches(store).bases_among([base.execution_id, other.execution_id]) == {base.execution_id}


# --- result URLs on S3 -------------------------------------------------------------------------------


def test_s3_result_urls_go_through_the_api_unless_a_cdn_serves_them() -> None:
    key = f"videos/ab/{'ab' * 32}.mp4"
    through = S3ArtifactStore("media", "renders", served_base_url="https://api.example.com/artifacts")
    assert through.url_for(key) == f"{API}{key}"  # the relative key: the route knows the prefix
    cdn = S3ArtifactStore("media", "renders", public_base_url="https://cdn.example.com", served_base_url=API)
    assert cdn.url_for(key) == f"https://cdn.example.com/renders/{key}"
    with pytest.raises(StorageError, match="VIDEO_PIPELINES_PUBLIC_URL"):
        S3ArtifactStore("media", served_base_url="api.example.com/artifacts")
