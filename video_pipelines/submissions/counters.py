"""Prometheus samples the database does not already hold, kept in the `counters` table (schema 3).

Node seconds and spend, submit-to-start seconds and provider HTTP errors are written by the process that observes
them (a node's seconds and its spend in one transaction, an execution's start where its start is claimed); each
sample is one row added to by an atomic upsert, so concurrent writers never lose an increment,
and a histogram's rows change in one transaction, so a scrape never sees half an observation.
`executions.metrics` renders them at scrape time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError
from video_pipelines.providers.context import reporting_provider_errors
from video_pipelines.submissions.rows import insert_into
from video_pipelines.submissions.schema import counters
from video_pipelines.submissions.store import SubmissionStore

PREFIX = "video_pipelines_"
NODE_SECONDS = PREFIX + "node_seconds"
PROVIDER_HTTP_ERRORS = PREFIX + "provider_http_errors_total"
SPEND_USD = PREFIX + "spend_usd_total"
SUBMIT_TO_START_SECONDS = PREFIX + "submit_to_start_seconds"
# Plan nodes take from a fraction of a second (a reframe of a short clip) to many minutes (a remote model).
NODE_SECONDS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# A submission's run starts within a second on a quiet deployment; minutes mean a queue (a cap, a burst).
SUBMIT_TO_START_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

_Row = tuple[str, str, float]  # (sample name, labels key, amount to add)
LOCAL_PROVIDER = "local"


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def labels_key(labels: Mapping[str, str]) -> str:
    return json.dumps({str(name): str(value) for name, value in labels.items()}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Sample:
    metric: str
    labels: Mapping[str, str]
    value: float


class Counters:
    """Prometheus samples in the `counters` table; each change is one transaction of atomic upserts."""

    def __init__(self, store: SubmissionStore) -> None:
        self._store = store

    def add(self, metric: str, labels: Mapping[str, str], amount: float = 1.0) -> None:
        self.increment(metric, [counter_row(metric, labels, amount)])

    def observe(self, histogram: str, labels: Mapping[str, str], value: float, buckets: Sequence[float]) -> None:
        self.increment(histogram, histogram_rows(histogram, labels, value, buckets))

    def samples(self) -> list[Sample]:
        query = sa.select(counters.c.metric, counters.c.labels, counters.c.value)
        try:
            with self._store.reader.connect() as connection:
                rows = connection.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(f"cannot read the counters in {self._store.url}", exc) from exc
        return [Sample(str(metric), json.loads(labels), float(value)) for metric, labels, value in rows]

    def increment(self, metric: str, rows: list[_Row]) -> None:
        # Sorted: concurrent transactions lock the rows in one order, so they cannot deadlock.
        values = [{"metric": name, "labels": labels, "value": amount} for name, labels, amount in sorted(rows)]
        engine = self._store.engine
        try:
            with engine.begin() as connection:
                connection.execute(_upsert(connection.dialect.name, values))
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(f"cannot add to {metric} in {self._store.url}", exc) from exc


def counter_row(metric: str, labels: Mapping[str, str], amount: float) -> _Row:
    if not math.isfinite(amount) or amount < 0:
        raise SubmissionStoreError(f"{metric}: a counter only goes up; cannot add {amount!r}")
    return (metric, labels_key(labels), float(amount))


def histogram_rows(histogram: str, labels: Mapping[str, str], value: float, buckets: Sequence[float]) -> list[_Row]:
    """One observation in every bucket row (0 above its bound, so the layout is whole), sum and count."""
    if not math.isfinite(value):
        raise SubmissionStoreError(f"{histogram}: cannot observe {value!r}")
    if "le" in labels:
        raise SubmissionStoreError(f"{histogram}: 'le' is the bucket label of a histogram, not one of its labels")
    bounds = sorted({float(bound) for bound in buckets} | {math.inf})
    rows = [
        (f"{histogram}_bucket", labels_key({**labels, "le": _le(bound)}), 1.0 if value <= bound else 0.0)
        for bound in bounds
    ]
    key = labels_key(labels)
    return [*rows, (f"{histogram}_sum", key, float(value)), (f"{histogram}_count", key, 1.0)]


def _upsert(dialect: str, values: list[dict[str, object]]) -> sa.Executable:
    """INSERT the rows; a row already there gets the new value added to its own."""
    insert = insert_into(counters, dialect).values(values)
    added = {"value": counters.c.value + insert.excluded.value}
    return insert.on_conflict_do_update(index_elements=[counters.c.metric, counters.c.labels], set_=added)


def store_error(message: str, exc: sa.exc.SQLAlchemyError) -> SubmissionStoreError:
    return SubmissionStoreError(f"{message}: {getattr(exc, 'orig', None) or exc}")


def count_node_work(
    store: SubmissionStore,
    operation: str,
    provider: str | None,
    seconds: float,
    cost_usd: float,
    *,
    warn: Callable[[str], None],
) -> None:
    """Count a completed node's work seconds and what it cost, in one transaction; a failure to write is a
    warning, never the node's failure."""
    labels = {"operation": operation, "provider": provider or LOCAL_PROVIDER}
    try:
        rows = histogram_rows(NODE_SECONDS, labels, seconds, NODE_SECONDS_BUCKETS)
        Counters(store).increment(NODE_SECONDS, [*rows, counter_row(SPEND_USD, labels, cost_usd)])
    except SubmissionStoreError as exc:
        warn(f"the node's {seconds:g} s and ${cost_usd:g} are not counted in the metrics: {exc}")


def observe_submit_to_start(store: SubmissionStore, seconds: float, *, warn: Callable[[str], None]) -> None:
    """Count how long an execution waited from its submission to its first run's start."""
    try:
        Counters(store).observe(SUBMIT_TO_START_SECONDS, {}, max(0.0, seconds), SUBMIT_TO_START_BUCKETS)
    except SubmissionStoreError as exc:
        warn(f"an execution's {seconds:.2f} s from submission to start are not counted in the metrics: {exc}")


@contextmanager
def counting_provider_errors(store: SubmissionStore, *, warn: Callable[[str], None]) -> Iterator[None]:
    """Count the provider HTTP error answers seen in this block."""
    tally = Counters(store)

    def count(provider: str, status: int) -> None:
        try:
            tally.add(PROVIDER_HTTP_ERRORS, {"provider": provider, "status": str(status)})
        except SubmissionStoreError as exc:
            warn(f"{provider}'s HTTP {status} is not counted in the metrics: {exc}")

    with reporting_provider_errors(count):
        yield
