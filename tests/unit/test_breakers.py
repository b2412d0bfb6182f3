"""Provider fallbacks and circuit breakers: the circuits' state machine on a real database shared by two store
instances (tests/postgres runs these on PostgreSQL), the provider calls through it against a Replicate-protocol
server on 127.0.0.1, a node's choice of provider, and the params' validation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from video_pipelines.errors import PlanValidationError, ProviderUnavailable, UsageError
from video_pipelines.executions.metrics import render_metrics
from video_pipelines.nodes.fallbacks import ProviderChoice
from video_pipelines.plan import parse_plan
from video_pipelines.plan.params import AddSubtitlesParams, GenerateVideoParams, Operation, parse_params
from video_pipelines.plan.results import VideoResult
from video_pipelines.providers import NoLedger
from video_pipelines.providers.context import guarding_circuits
from video_pipelines.providers.http import Abandoned, stopping_on
from video_pipelines.providers.pricing import Price, PricingTable
from video_pipelines.providers.replicate import ReplicateProvider
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.breakers import BreakerSettings, CircuitState, ProviderCircuits

from ..conftest import STORE_KEY
from ..memory_records import MemoryRunRecords
from .test_providers_replicate_fal import FAST, GENERATION, LOOPBACK, POLL, TOKEN, Answer, FakeReplicate
from .test_submissions_store import in_parallel

SETTINGS = BreakerSettings(failures=3, open_seconds=60.0)
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[SubmissionStore, SubmissionStore]]:
    """Two store instances on one database, as two workers of a deployment have."""
    with SubmissionStore(db_url, secret_key=STORE_KEY) as one, SubmissionStore(db_url, secret_key=STORE_KEY) as two:
        yield one, two


# ---- the state machine, shared through the database ----


def test_a_circuit_opens_after_consecutive_failures_across_workers(
    stores: tuple[SubmissionStore, SubmissionStore],
) -> None:
    clock = Clock()
    one, two = (ProviderCircuits(store, SETTINGS, clock=clock) for store in stores)
    one.failed("replicate")
    two.failed("replicate")
    assert one.admit("replicate").allowed and two.admit("replicate").allowed
    two.succeeded("replicate")  # a success in between: the failures are no longer in a row
    one.failed("replicate")
    two.failed("replicate")
    assert one.admit("fal").allowed and not one.is_open("replicate")
    one.failed("replicate")  # the third in a row, seen by the other worker
    admission = two.admit("replicate")
    assert not admission.allowed and admission.wait == pytest.approx(60.0)
    assert two.is_open("replicate") and one.open_circuits() == {"replicate": CircuitState.OPEN}
    assert one.admit("fal").allowed, "a circuit is per provider"


@dataclass
class Opened:
    """Replicate's circuit, just opened by worker `one`'s failures; `two` shares its database."""

    clock: Clock
    one: ProviderCircuits
    two: ProviderCircuits


@pytest.fixture
def opened(stores: tuple[SubmissionStore, SubmissionStore]) -> Opened:
    clock = Clock()
    one, two = (ProviderCircuits(store, SETTINGS, clock=clock) for store in stores)
    for _ in range(3):
        one.failed("replicate")
    return Opened(clock, one, two)


def test_after_open_seconds_one_caller_probes_and_its_success_closes(opened: Opened) -> None:
    clock, one, two = opened.clock, opened.one, opened.two
    clock.advance(59)
    assert two.admit("replicate").wait == pytest.approx(1.0)
    clock.advance(1)
    assert two.admit("replicate").probe
    held = one.admit("replicate")
    assert not held.allowed and held.wait <= 1.0, "one probe at a time: the other worker asks again soon"
    assert one.open_circuits() == {"replicate": CircuitState.HALF_OPEN}
    two.succeeded("replicate")
    assert one.admit("replicate") == two.admit("replicate")
    circuit = one.get("replicate")
    assert circuit is not None and circuit.state is CircuitState.CLOSED and circuit.failures == 0
    assert circuit.opened_at is None


def test_a_failed_probe_reopens_for_another_open_period(opened: Opened) -> None:
    clock, one, two = opened.clock, opened.one, opened.two
    clock.advance(61)
    assert one.admit("replicate").probe
    two.failed("replicate")
    assert two.admit("replicate").wait == pytest.approx(60.0)
    circuit = two.get("replicate")
    assert circuit is not None and circuit.state is CircuitState.OPEN and circuit.opened_at == clock.now


def test_a_probe_whose_caller_died_is_taken_over_after_its_lease(opened: Opened) -> None:
    clock, one, two = opened.clock, opened.one, opened.two
    clock.advance(60)
    assert one.admit("replicate").probe  # ... and that worker is never heard of again
    clock.advance(SETTINGS.probe_seconds - 1)
    assert not two.admit("replicate").allowed
    clock.advance(1)
    assert two.admit("replicate").probe


def test_of_many_workers_racing_for_the_probe_exactly_one_gets_it(db_url: str) -> None:
    clock = Clock()
    with SubmissionStore(db_url, secret_key=STORE_KEY) as store:
        for _ in range(3):
            ProviderCircuits(store, SETTINGS, clock=clock).failed("fal")
        clock.advance(60)
        admissions = in_parallel(8, lambda _i: ProviderCircuits(store, SETTINGS, clock=clock).admit("fal"))
    assert sum(admission.probe for admission in admissions) == 1
    assert sum(admission.allowed for admission in admissions) == 1


def test_racing_failures_are_all_counted(db_url: str) -> None:
    with SubmissionStore(db_url, secret_key=STORE_KEY) as store:
        circuits = ProviderCircuits(store, BreakerSettings(failures=100))
        in_parallel(6, lambda _i: circuits.failed("replicate"))
        circuit = circuits.get("replicate")
    assert circuit is not None and circuit.failures == 6 and circuit.state is CircuitState.CLOSED


def test_metrics_show_each_known_circuit(stores: tuple[SubmissionStore, SubmissionStore]) -> None:
    one, _two = stores
    circuits = ProviderCircuits(one, BreakerSettings(failures=1))
    circuits.failed("replicate")
    circuits.failed("fal")
    circuits.succeeded("fal")
    text = render_metrics(one, MemoryRunRecords()).decode()
    assert 'video_pipelines_provider_circuit_open{provider="replicate"} 1.0' in text
    assert 'video_pipelines_provider_circuit_open{provider="fal"} 0.0' in text


def test_a_broken_database_never_holds_a_call_back(tmp_path: Path) -> None:
    warnings: list[str] = []
    store = SubmissionStore(f"sqlite:///{tmp_path / 'db.sqlite'}", secret_key=STORE_KEY)
    circuits = ProviderCircuits(store, SETTINGS, warn=warnings.append)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE video_pipelines_provider_circuits")
    circuits.failed("replicate")
    assert circuits.admit("replicate").allowed and not circuits.is_open("replicate")
    store.close()
    assert any("replicate's circuit could not be read" in warning for warning in warnings)
    assert any("failure is not recorded" in warning for warning in warnings)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, BreakerSettings(5, 60.0)),
        (
            {"VIDEO_PIPELINES_BREAKER_FAILURES": "2", "VIDEO_PIPELINES_BREAKER_OPEN_SECONDS": "1.5"},
            BreakerSettings(2, 1.5),
        ),
    ],
)
def test_settings_from_the_environment(environ: dict[str, str], expected: BreakerSettings) -> None:
    assert BreakerSettings.from_env(environ) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"VIDEO_PIPELINES_BREAKER_FAILURES": "0"},
        {"VIDEO_PIPELINES_BREAKER_FAILURES": "five"},
        {"VIDEO_PIPELINES_BREAKER_OPEN_SECONDS": "-1"},
        {"VIDEO_PIPELINES_BREAKER_OPEN_SECONDS": "soon"},
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=next(iter(environ))):
        BreakerSettings.from_env(environ)


# ---- provider calls through the circuits, against a Replicate-protocol server ----


@dataclass
class Outage(FakeReplicate):
    """Every create is refused with 503 while `down` (`refused_at`: when), until `up_after` were refused."""

    down: bool = True
    up_after: int | None = None
    refused_at: list[float] = field(default_factory=list)
    created_at: list[float] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return len(self.refused_at)

    def created(self, job: Any) -> Answer:
        if self.down:
            self.refused_at.append(time.monotonic())
            self.down = self.up_after is None or self.refused < self.up_after
            self.jobs.pop(job.id, None)
            return 503, {}, {"detail": "Service Unavailable"}
        self.created_at.append(time.monotonic())
        return super().created(job)


@pytest.fixture
def outage(clip: bytes) -> Iterator[Outage]:
    api = Outage(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=0).start()
    try:
        yield api
    finally:
        api.stop()


def replicate_at(api: FakeReplicate) -> ReplicateProvider:
    return ReplicateProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)


def test_an_open_circuit_is_skipped_without_calling_the_provider(
    outage: Outage, sqlite_store: SubmissionStore, tmp_path: Path
) -> None:
    circuits = ProviderCircuits(sqlite_store, BreakerSettings(failures=2, open_seconds=60))
    with guarding_circuits(circuits, may_skip=True), pytest.raises(ProviderUnavailable, match="circuit is open"):
        replicate_at(outage).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert outage.refused == 2, "the call stops once its failures opened the circuit"
    with guarding_circuits(circuits, may_skip=True), pytest.raises(ProviderUnavailable):
        replicate_at(outage).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert outage.refused == 2, "a later call never reaches the provider"


def test_a_call_with_no_fallback_waits_for_the_circuit_and_its_probe_closes_it(
    outage: Outage, sqlite_store: SubmissionStore, tmp_path: Path, clip: bytes
) -> None:
    circuits = ProviderCircuits(sqlite_store, BreakerSettings(failures=2, open_seconds=0.5))
    outage.up_after = 3  # two failures open the circuit, its first probe fails too
    with guarding_circuits(circuits, may_skip=False):
        # FAST gives up after 3 attempts: waiting for the circuit, the call outlives them.
        replicate_at(outage).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert (tmp_path / "out.mp4").read_bytes() == clip and outage.refused == 3
    opened, probed = outage.refused_at[1], outage.refused_at[2]
    assert probed - opened >= 0.5 and outage.created_at[0] - probed >= 0.5, "each probe waited for the open period"
    circuit = circuits.get("replicate")
    assert circuit is not None and circuit.state is CircuitState.CLOSED


def test_a_call_held_back_by_the_circuit_stops_when_its_run_stops_waiting(
    outage: Outage, sqlite_store: SubmissionStore, tmp_path: Path
) -> None:
    circuits = ProviderCircuits(sqlite_store, BreakerSettings(failures=1, open_seconds=3600))
    circuits.failed("replicate")
    stop = threading.Event()
    canceled = threading.Timer(0.5, stop.set)
    canceled.start()
    started = time.monotonic()
    with stopping_on(stop), guarding_circuits(circuits, may_skip=False), pytest.raises(Abandoned):
        replicate_at(outage).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert time.monotonic() - started < 5 and outage.refused == 0


def test_calls_through_a_clean_circuit_read_it_and_write_nothing(
    outage: Outage, sqlite_store: SubmissionStore, tmp_path: Path
) -> None:
    outage.down = False
    circuits = ProviderCircuits(sqlite_store, SETTINGS)
    statements: list[str] = []
    sa.event.listen(sqlite_store.engine, "before_cursor_execute", lambda *call: statements.append(call[2]))
    with guarding_circuits(circuits, may_skip=False):
        replicate_at(outage).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    verbs = {statement.split()[0].upper() for statement in statements}
    assert "SELECT" in verbs and not verbs & {"UPDATE", "INSERT", "DELETE"}, verbs
    circuits.failed("replicate")  # one failure counted: the next success resets it
    with guarding_circuits(circuits, may_skip=False):
        replicate_at(outage).generate(GENERATION, tmp_path / "again.mp4", timeout=30, ledger=NoLedger())
    circuit = circuits.get("replicate")
    assert circuit is not None and circuit.failures == 0


# ---- a node's providers ----


def generate(**params: Any) -> GenerateVideoParams:
    parsed = parse_params(Operation.GENERATE_VIDEO, generate_job(**params)["params"])
    assert isinstance(parsed, GenerateVideoParams)
    return parsed


def generate_job(**params: Any) -> dict[str, Any]:
    return {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", **params}}


FALLBACKS = [{"provider": "fal", "model": "fal-ai/veo3"}, {"provider": "local"}]


def test_a_node_without_fallbacks_has_no_choice() -> None:
    assert ProviderChoice.of(generate(provider="replicate")) is None


def test_the_choice_goes_through_the_fallbacks_in_order() -> None:
    params = generate(provider="replicate", fallbacks=FALLBACKS)
    choice = ProviderChoice.of(params)
    assert choice is not None and (choice.provider, choice.model, choice.fallback_from) == ("replicate", None, ())
    second = choice.next
    assert second is not None and second.applied(params).provider == "fal"
    assert second.applied(params).model == "fal-ai/veo3" and second.fallback_from == ("replicate",)
    third = second.next
    assert third is not None and third.provider == "local" and third.fallback_from == ("replicate", "fal")
    assert third.next is None


class MemoryLedger:
    def __init__(self, value: str | None = None) -> None:
        self.value = value

    def recall(self) -> str | None:
        return self.value

    def remember(self, job_id: str) -> None:
        self.value = job_id


def test_each_entry_keeps_its_own_job_and_a_continuation_resumes_the_entry_it_finds() -> None:
    params = generate(provider="replicate", fallbacks=FALLBACKS)
    choice = ProviderChoice.of(params)
    assert choice is not None and choice.next is not None
    node_ledger = MemoryLedger()
    choice.ledger(node_ledger).remember("pred-1")
    assert node_ledger.value == "0 replicate pred-1" and choice.ledger(node_ledger).recall() == "pred-1"
    assert choice.next.ledger(node_ledger).recall() is None, "a fallback never resumes the job before it"
    choice.next.ledger(node_ledger).remember("fal-ai/veo3/req-9")
    resumed = ProviderChoice.of(params, node_ledger.value)
    assert (
        resumed is not None
        and resumed.provider == "fal"
        and resumed.ledger(node_ledger).recall() == "fal-ai/veo3/req-9"
    )


def test_a_failed_entry_costs_its_per_call_price_only_when_it_started_a_job() -> None:
    params = generate(provider="replicate", model="owner/video", fallbacks=FALLBACKS)
    choice = ProviderChoice.of(params)
    assert choice is not None
    pricing = PricingTable({"replicate": {"owner/video": Price(per_second=0.05, per_call=0.25)}})
    assert choice.billed_failure(MemoryLedger(), pricing) == 0.0, "refused before any job: nothing billed"
    assert choice.billed_failure(MemoryLedger("0 replicate pred-1"), pricing) == 0.25
    assert choice.billed_failure(MemoryLedger("pred-1"), pricing) == 0.0, "not this entry's job"


def test_a_result_says_who_made_it_only_for_a_node_with_fallbacks() -> None:
    plain = VideoResult("file:///v.mp4", 1.0, 1280, 720, "16:9", 10, "ab" * 32)
    assert "provider" not in plain.to_wire() and "fallbackFrom" not in plain.to_wire()
    made = VideoResult(
        "file:///v.mp4", 1.0, 1280, 720, "16:9", 10, "ab" * 32, provider="local", fallback_from=("replicate",)
    )
    wire = made.to_wire()
    assert wire["provider"] == "local" and wire["fallbackFrom"] == ["replicate"]
    assert VideoResult.from_wire(wire) == made


# ---- params validation ----


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (generate_job(fallbacks=[{"provider": "runway"}]), "gen.params.fallbacks.0.provider: Input should be"),
        (generate_job(fallbacks=[]), "gen.params.fallbacks: List should have at least 1 item"),
        (generate_job(fallbacks=[{"provider": "local"}] * 6), "gen.params.fallbacks: List should have at most 5"),
        (generate_job(fallbacks=[{"provider": "fal", "modle": "x"}]), "gen.params.fallbacks.0.modle: unknown param"),
        (
            {
                "id": "sync",
                "type": "lipSync",
                "params": {"audioUrl": "https://a.example/v.mp3", "fallbacks": [{"provider": "google-cloud"}]},
            },
            "sync.params.fallbacks.0.provider: Input should be 'local', 'replicate' or 'fal'",
        ),
        (
            {"id": "subs", "type": "addSubtitles", "params": {"text": "hello", "fallbacks": [{"provider": "local"}]}},
            "subs.params.fallbacks: 'fallbacks' is for captions from speech",
        ),
        (
            {
                "id": "subs",
                "type": "addSubtitles",
                "params": {"language": "ja", "provider": "fal", "fallbacks": [{"provider": "local"}]},
            },
            "subs.params.fallbacks: entry 0 (provider local): the local recogniser transcribes",
        ),
        (
            {"id": "cut", "type": "merge", "params": {"fallbacks": [{"provider": "local"}]}},
            "cut.params.fallbacks: unknown param for merge",
        ),
    ],
)
def test_bad_fallbacks_are_refused_naming_the_node_and_field(job: dict[str, Any], expected: str) -> None:
    jobs = [job] if job["type"] == "generateVideo" else [generate_job(), {**job, "dependsOn": ["gen"]}]
    with pytest.raises(PlanValidationError) as refused:
        parse_plan({"jobs": jobs})
    assert any(problem.startswith(expected) for problem in refused.value.problems), refused.value.problems


def test_speech_captions_take_fallbacks() -> None:
    params = AddSubtitlesParams.model_validate(
        {"language": "en", "provider": "replicate", "fallbacks": [{"provider": "local"}]}
    )
    choice = ProviderChoice.of(params)
    assert choice is not None and choice.operation == "addSubtitles" and choice.entries[1] == ("local", None)
