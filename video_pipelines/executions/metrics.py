"""The Prometheus metrics of `GET /metrics`, computed at scrape time from the database and the orchestrator.

Why at scrape time: API processes, the daemon and run workers on other machines must agree on one
count; prometheus_client's multiprocess mode needs a directory they all share and forgets on redeploy.
Starts and ends are counted from the outcome and attempt rows (executions, not runs; one GROUP BY
each). What the database does not hold (node seconds, provider HTTP errors) goes into the `counters`
table by atomic upserts; a histogram's rows are written in one transaction, so a scrape never sees
half an observation. A retention that deletes rows looks like a counter reset.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from video_pipelines.executions.records import RunRecords
from video_pipelines.submissions import (
    AttemptReason,
    AttemptStore,
    ExecutionOutcomes,
    OutcomeTally,
    SubmissionState,
    SubmissionStore,
)
from video_pipelines.submissions.breakers import BreakerSettings, Circuit, CircuitState, ProviderCircuits
from video_pipelines.submissions.counters import (
    NODE_SECONDS,
    PREFIX,
    PROVIDER_HTTP_ERRORS,
    SPEND_USD,
    SUBMIT_TO_START_SECONDS,
    Counters,
    Sample,
    labels_key,
    store_error,
)
from video_pipelines.submissions.schema import webhook_attempts
from video_pipelines.vocabulary import ExecutionState

_FINISHED = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELED)


class ServiceCollector:
    def __init__(self, store: SubmissionStore, records: RunRecords) -> None:
        self._store = store
        self._records = records

    def collect(self) -> Iterator[Metric]:
        try:
            submissions = self._store.count_by_state()
            outcomes = ExecutionOutcomes(self._store).tally()
            run_attempts = AttemptStore(self._store).outcome_counts()
            code = webhook_attempts.c.status_code
            with self._store.reader.connect() as connection:
                by_code = connection.execute(sa.select(code, sa.func.count()).group_by(code)).all()
            attempts = {status: int(count) for status, count in by_code}
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(f"cannot read the metrics from {self._store.url}", exc) from exc
        samples = Counters(self._store).samples()
        try:
            circuits = ProviderCircuits(self._store, BreakerSettings()).all()
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(f"cannot read the provider circuits from {self._store.url}", exc) from exc
        yield from _execution_metrics(submissions, outcomes, run_attempts, self._records.queued_runs())
        yield _histogram(NODE_SECONDS, "Work seconds of each plan node that ran, by operation and provider.", samples)
        yield _histogram(
            SUBMIT_TO_START_SECONDS,
            "Seconds from an execution's submission to its first run's start (executions submitted through the "
            "API, the CLI or the client).",
            samples,
        )
        yield _webhook_attempts(attempts)
        yield _counter(
            PROVIDER_HTTP_ERRORS,
            "Answers of provider APIs that were not 2xx, by provider and HTTP status (retried ones included).",
            samples,
        )
        yield _counter(
            SPEND_USD,
            "USD that nodes which ran cost at the pricing table's prices (billed failed attempts included), by "
            "operation and the provider that made them.",
            samples,
        )
        yield _circuits_open(circuits)


def _execution_metrics(
    submissions: Mapping[str, int], outcomes: OutcomeTally, attempts: Mapping[tuple[str, str], int], queued_runs: int
) -> Iterator[Metric]:
    yield CounterMetricFamily(
        PREFIX + "executions_submitted",
        "Executions submitted (stored submissions, through the API, the CLI or the client).",
        value=sum(submissions.values()),
    )
    yield CounterMetricFamily(
        PREFIX + "executions_started",
        "Executions whose first run started (also runs launched directly through Dagster).",
        value=outcomes.started,
    )
    finished = CounterMetricFamily(
        PREFIX + "executions_finished",
        "Executions that ended, each once, by how it first ended (a resumed run's end is the execution's).",
        labels=["status"],
    )
    for status in _FINISHED:
        finished.add_metric([status.value], outcomes.finished.get(status.value, 0))
    yield finished
    family = CounterMetricFamily(
        PREFIX + "execution_attempts",
        "Runs after an execution's first, once ended: by reason (resume: its worker was lost; retry: a user's) "
        "and how that run ended.",
        labels=["reason", "outcome"],
    )
    for reason in AttemptReason:
        for status in _FINISHED:
            family.add_metric([reason.value, status.value], attempts.get((reason.value, status.value), 0))
    yield family
    yield GaugeMetricFamily(
        PREFIX + "pending_submissions",
        "Submissions waiting for the submission sensor to launch them (one whose run was just created "
        "counts until the sensor's next tick marks it launched).",
        value=submissions.get(SubmissionState.PENDING.value, 0) + submissions.get(SubmissionState.LAUNCHING.value, 0),
    )
    yield GaugeMetricFamily(
        PREFIX + "queued_runs",
        "Runs of execute_plan waiting in Dagster's run queue.",
        value=queued_runs,
    )


def _series(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[labels_key({name: value for name, value in sample.labels.items() if name != "le"})].append(sample)
    return grouped


def _label_names(samples: Iterable[Sample]) -> list[str]:
    return sorted({name for sample in samples for name in sample.labels if name != "le"})


def _histogram(name: str, documentation: str, samples: Iterable[Sample]) -> Metric:
    """The histogram `name` of the counters' rows, a series per label set (its labels as the rows name them)."""
    mine = [sample for sample in samples if sample.metric.startswith(name + "_")]
    labels = _label_names(mine)
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, rows in sorted(_series(mine).items()):
        series = json.loads(key)
        buckets = sorted(
            ((row.labels["le"], row.value) for row in rows if row.metric == f"{name}_bucket"),
            key=lambda bucket: float(bucket[0]),
        )
        total = sum(row.value for row in rows if row.metric == f"{name}_sum")
        if not buckets or buckets[-1][0] != "+Inf":
            continue  # not a histogram series this version wrote
        family.add_metric([series.get(label, "") for label in labels], buckets, total)
    return family


def _webhook_attempts(attempts: Mapping[int | None, int]) -> Metric:
    outcomes = dict.fromkeys(("delivered", "http_error", "error"), 0)
    for status, count in attempts.items():
        outcomes["error" if status is None else "delivered" if 200 <= status < 300 else "http_error"] += count
    family = CounterMetricFamily(
        PREFIX + "webhook_attempts",
        "Webhook delivery attempts by outcome: delivered (2xx), http_error (another status), error (no answer).",
        labels=["outcome"],
    )
    for outcome, count in outcomes.items():
        family.add_metric([outcome], count)
    return family


def _counter(name: str, documentation: str, samples: Iterable[Sample]) -> Metric:
    mine = sorted((sample for sample in samples if sample.metric == name), key=lambda sample: labels_key(sample.labels))
    labels = _label_names(mine)
    family = CounterMetricFamily(name, documentation, labels=labels)
    for sample in mine:
        family.add_metric([sample.labels.get(label, "") for label in labels], sample.value)
    return family


def _circuits_open(circuits: Iterable[Circuit]) -> Metric:
    family = GaugeMetricFamily(
        PREFIX + "provider_circuit_open",
        "1 while a provider's circuit is open (or half-open: one probe call let through), 0 once closed again; "
        "a provider that never failed has no series.",
        labels=["provider"],
    )
    for circuit in circuits:
        family.add_metric([circuit.provider], 0 if circuit.state is CircuitState.CLOSED else 1)
    return family


def render_metrics(store: SubmissionStore, records: RunRecords) -> bytes:
    """Every metric in the Prometheus text format; a fresh registry per scrape keeps nothing in this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(store, records))
    return generate_latest(registry)
