"""Retention of the asset catalog: old executions' partitions are deleted, hourly or on demand.

Only partition keys go (Dagster suggests at most 100,000 per asset); runs, event logs, videos,
status and the reuse index stay. A pass has a time budget so a tick ends within the sensor timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from video_pipelines.errors import UsageError
from video_pipelines.executions.retention import began_after, describe_cutoff, ended_before
from video_pipelines.orchestration.catalog.assets import partitions_of
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import Operation
from video_pipelines.submissions import execution_created_at

CATALOG_RETENTION_ENV = "VIDEO_PIPELINES_CATALOG_RETENTION_DAYS"
SENSOR_INTERVAL_SECONDS = 3600
# Well inside Dagster's sensor evaluation timeout (60 s by default).
SENSOR_BUDGET_SECONDS = 20.0
RUN_QUERY_BATCH = 200
LOGGED_EXECUTIONS = 20


@dataclass
class CatalogPrune:
    cutoff: float
    dry_run: bool
    pruned: list[str] = field(default_factory=list)  # execution ids, oldest partitions first
    partitions_deleted: int = 0
    kept: int = 0  # executions still running or ended after the cutoff
    complete: bool = True  # False: the time budget ended the pass; the next one goes on

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rest = "" if self.complete else "; time budget spent, the next pass goes on"
        return (
            f"{verb} {self.partitions_deleted} partition(s) of {len(self.pruned)} execution(s) ended before "
            f"{describe_cutoff(self.cutoff)}; kept {self.kept}{rest}"
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "cutoff": describe_cutoff(self.cutoff),
            "dryRun": self.dry_run,
            "executionsPruned": len(self.pruned),
            "partitionsDeleted": self.partitions_deleted,
            "executionsKept": self.kept,
            "complete": self.complete,
            "executions": self.pruned,
        }


def parse_retention_days(raw: str, where: str) -> timedelta:
    try:
        days = float(raw)
    except ValueError:
        raise UsageError(f"{where}: {raw!r} is not a number of days") from None
    if not days > 0:
        raise UsageError(f"{where}: a retention must be more than 0 days, not {raw}")
    return timedelta(days=days)


def prune_catalog(
    instance: dg.DagsterInstance,
    retention: timedelta,
    *,
    now: float | None = None,
    dry_run: bool = False,
    budget_seconds: float | None = None,
) -> CatalogPrune:
    cutoff = (time.time() if now is None else now) - retention.total_seconds()
    report = CatalogPrune(cutoff=cutoff, dry_run=dry_run)
    stop_at = None if budget_seconds is None else time.monotonic() + budget_seconds
    records = DagsterRunRecords(instance)
    # Executions whose ids say they began after the cutoff are kept without a query.
    candidates: list[tuple[str, Sequence[tuple[str, str]]]] = []
    for execution_id, keys in _partitions_by_execution(instance).items():
        if began_after(execution_id, cutoff):
            report.kept += 1
        else:
            candidates.append((execution_id, keys))
    for start in range(0, len(candidates), RUN_QUERY_BATCH):
        if stop_at is not None and time.monotonic() > stop_at:
            report.complete = False
            break
        batch = candidates[start : start + RUN_QUERY_BATCH]
        runs = records.runs_of_executions([execution_id for execution_id, _ in batch])
        for execution_id, keys in batch:
            if not ended_before(execution_id, runs.get(execution_id, []), cutoff):
                report.kept += 1
                continue
            if not dry_run:
                for partitions_def_name, key in keys:
                    instance.delete_dynamic_partition(partitions_def_name, key)
            report.pruned.append(execution_id)
            report.partitions_deleted += len(keys)
    return report


def _partitions_by_execution(instance: dg.DagsterInstance) -> dict[str, Sequence[tuple[str, str]]]:
    """Every node-result partition by execution id, oldest first (run-id-named executions first)."""
    by_execution: dict[str, list[tuple[str, str]]] = {}
    for operation in Operation:
        name = partitions_of(operation)
        for key in instance.get_dynamic_partitions(name):
            # `<execution id>:<node id>`: execution ids hold no ':' (a node id may).
            execution_id = key.partition(":")[0]
            by_execution.setdefault(execution_id, []).append((name, key))
    return dict(sorted(by_execution.items(), key=lambda item: execution_created_at(item[0]) or 0.0))


@dg.sensor(
    name="catalog_retention",
    description=(
        "Once an hour, deletes the asset catalog's partitions of executions whose runs all ended more than "
        f"${CATALOG_RETENTION_ENV} days ago (their videos, runs, status and reuse stay). Does nothing while "
        "that variable is not set; `video-pipelines prune-catalog` runs the same pass by hand."
    ),
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def catalog_retention(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    raw = os.environ.get(CATALOG_RETENTION_ENV, "").strip()
    if not raw:
        return dg.SkipReason(f"retention is off: ${CATALOG_RETENTION_ENV} is not set")
    retention = parse_retention_days(raw, CATALOG_RETENTION_ENV)
    report = prune_catalog(context.instance, retention, budget_seconds=SENSOR_BUDGET_SECONDS)
    if report.pruned:
        # One line, however many: a tick may prune thousands.
        shown = ", ".join(report.pruned[:LOGGED_EXECUTIONS])
        more = len(report.pruned) - LOGGED_EXECUTIONS
        context.log.info(f"left the catalog: {shown}{f' and {more} more' if more > 0 else ''}")
    return dg.SkipReason(report.summary())
