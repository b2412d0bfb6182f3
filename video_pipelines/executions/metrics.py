"""The Prometheus metrics of `GET /metrics`, computed at scrape time from the database and the orchestrator.

Here, above the submission store and the run records it reads, not in `telemetry` (which the
provider HTTP stack and the webhooks, far below, import for their spans).

Why at scrape time: several API processes, the Dagster daemon and the run workers (later on
other machines, through Celery) must all agree on one count. So every metric is read, when
Prometheus scrapes, from what they all share: the submission store's database and the
Dagster instance (through the `RunRecords` protocol). prometheus_client's multiprocess mode
is not used: it needs one local directory shared by every process, which processes on other
machines do not have, and it keeps nothing across a redeploy.

Starts and ends are written, once each, by whichever process observes them first (the
run-status sensors of the daemon, the plan sensor, `cancel`): an execution's into the
execution outcomes table, an attempt's into its row of the attempts table (schema 7, see
`submissions.outcomes`). Counting them from there, not from the runs, counts executions and
not runs, and costs a scrape one GROUP BY each instead of a query per run status and tag.

What the database does not already hold is written into the `counters` table (schema 3) by
the process that observes it, through `Counters`: node seconds (the `execute_plan` op, when a
node completes) and provider HTTP errors (the provider HTTP stack, through the sink of
`providers.context`). Each sample is one row (metric, labels as canonical JSON, value), added
to by an atomic upsert (`INSERT ... ON CONFLICT DO UPDATE SET value = value + excluded.value`),
so concurrent writers never lose an increment. A histogram is its cumulative `_bucket{le}`
rows plus `_sum` and `_count`, all incremented in one transaction per observation, so a
scrape never sees half an observation.

Metrics (every one prefixed `video_pipelines_`):

- `executions_submitted_total` — submissions stored (through the API, the CLI or the client).
- `executions_started_total` — executions whose first run started (also runs launched
  directly through Dagster); a resume or a retry starts no new execution.
- `executions_finished_total{status}` — `completed`, `failed`, `canceled`: each execution
  once, by how it first ended, whatever ended it (its run, a rejection of its submission, a
  cancel while pending). A run whose worker was lost and that is resumed is no end: the
  execution ends (and counts) when its resumed run ends.
- `execution_attempts_total{reason,outcome}` — runs after an execution's first, once they
  ended: `reason` `resume` (its run worker was lost) or `retry` (a user's), `outcome` how
  that run ended (`completed`, `failed`, `canceled`). A retry's end counts here only: the
  execution counted when it first ended.
- `node_seconds{operation,provider}` — histogram of the work seconds of each node that ran
  (reused nodes run nothing); `provider` is `local` for FFmpeg-only operations.
- `pending_submissions` — gauge: submissions waiting for the submission sensor.
- `queued_runs` — gauge: runs of `execute_plan` waiting in Dagster's run queue.
- `webhook_attempts_total{outcome}` — `delivered` (2xx), `http_error` (another status),
  `error` (no answer: timeout, connection refused, destination refused).
- `provider_http_errors_total{provider,status}` — non-2xx answers of provider APIs, retried
  ones included.

Values counted from rows (submissions, outcomes, attempts) only go up as long as those rows
are kept; a retention that deletes them looks to Prometheus like a counter reset. Executions
that started or ended before schema 7 are not in `executions_started_total` or
`executions_finished_total`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
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
from video_pipelines.submissions.counters import (
    NODE_SECONDS,
    NODE_SECONDS_BUCKETS,
    PREFIX,
    PROVIDER_HTTP_ERRORS,
    Counters,
    Sample,
    counting_provider_errors,
    labels_key,
    observe_node_seconds,
    store_error,
)
from video_pipelines.submissions.schema import webhook_attempts
from video_pipelines.vocabulary import ExecutionState

__all__ = [
    "CONTENT_TYPE_LATEST",
    "NODE_SECONDS",
    "NODE_SECONDS_BUCKETS",
    "PROVIDER_HTTP_ERRORS",
    "Counters",
    "Sample",
    "ServiceCollector",
    "counting_provider_errors",
    "observe_node_seconds",
    "render_metrics",
]

_FINISHED = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELED)
_OUTCOMES = ("delivered", "http_error", "error")


class ServiceCollector:
    """A prometheus_client collector that reads every metric from the store and the run records when collected."""

    def __init__(self, store: SubmissionStore, records: RunRecords) -> None:
        self._store = store
        self._records = records

    def collect(self) -> Iterator[Metric]:
        try:
            submissions = self._store.count_by_state()
            outcomes = ExecutionOutcomes(self._store).tally()
            run_attempts = AttemptStore(self._store).outcome_counts()
            attempts = self._attempts_by_status()
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(f"cannot read the metrics from {self._store.url}", exc) from exc
        samples = Counters(self._store).samples()
        yield from _execution_metrics(submissions, outcomes, run_attempts)
        yield from _queue_metrics(submissions, self._records.queued_runs())
        yield _node_seconds([sample for sample in samples if sample.metric.startswith(NODE_SECONDS + "_")])
        yield _webhook_attempts(attempts)
        yield _provider_errors([sample for sample in samples if sample.metric == PROVIDER_HTTP_ERRORS])

    def _attempts_by_status(self) -> dict[int | None, int]:
        """How many webhook attempts ended with each status code (None: no answer)."""
        code = webhook_attempts.c.status_code
        query = sa.select(code, sa.func.count()).group_by(code)
        with self._store.reader.connect() as connection:
            return {status: int(count) for status, count in connection.execute(query).all()}


def _execution_metrics(
    submissions: Mapping[str, int], outcomes: OutcomeTally, attempts: Mapping[tuple[str, str], int]
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


def _queue_metrics(submissions: Mapping[str, int], queued_runs: int) -> Iterator[Metric]:
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
    """The samples grouped by their labels without `le` (one group per histogram series)."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[labels_key({name: value for name, value in sample.labels.items() if name != "le"})].append(sample)
    return grouped


def _node_seconds(samples: list[Sample]) -> Metric:
    labels = ["operation", "provider"]
    family = HistogramMetricFamily(
        NODE_SECONDS, "Work seconds of each plan node that ran, by operation and provider.", labels=labels
    )
    for key, rows in sorted(_series(samples).items()):
        series = json.loads(key)
        buckets = sorted(
            ((row.labels["le"], row.value) for row in rows if row.metric == f"{NODE_SECONDS}_bucket"),
            key=lambda bucket: float(bucket[0]),
        )
        total = sum(row.value for row in rows if row.metric == f"{NODE_SECONDS}_sum")
        if not buckets or buckets[-1][0] != "+Inf":
            continue  # not a histogram series this version wrote
        family.add_metric([series.get(name, "") for name in labels], buckets, total)
    return family


def _webhook_attempts(attempts: Mapping[int | None, int]) -> Metric:
    outcomes = dict.fromkeys(_OUTCOMES, 0)
    for status, count in attempts.items():
        if status is None:
            outcomes["error"] += count
        elif 200 <= status < 300:
            outcomes["delivered"] += count
        else:
            outcomes["http_error"] += count
    family = CounterMetricFamily(
        PREFIX + "webhook_attempts",
        "Webhook delivery attempts by outcome: delivered (2xx), http_error (another status), error (no answer).",
        labels=["outcome"],
    )
    for outcome, count in outcomes.items():
        family.add_metric([outcome], count)
    return family


def _provider_errors(samples: list[Sample]) -> Metric:
    labels = ["provider", "status"]
    family = CounterMetricFamily(
        PROVIDER_HTTP_ERRORS,
        "Answers of provider APIs that were not 2xx, by provider and HTTP status (retried ones included).",
        labels=labels,
    )
    for sample in sorted(samples, key=lambda sample: labels_key(sample.labels)):
        family.add_metric([sample.labels.get(name, "") for name in labels], sample.value)
    return family


def render_metrics(store: SubmissionStore, records: RunRecords) -> bytes:
    """Every metric in the Prometheus text format (`CONTENT_TYPE_LATEST`), read from the store and the records now."""
    # A fresh registry per scrape: nothing is kept in this process between scrapes.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(store, records))
    return generate_latest(registry)
