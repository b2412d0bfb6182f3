"""What a tick did, said in its row. Dagster 1.13 shows a skipped tick's reason on the tick itself (the tooltip
of its "0 runs requested" tag, its details, the sensor list's latest tick) and a tick with runs as its runs; the
log behind "View logs" says the rest. A tick that did nothing says so in a few words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from video_pipelines.executions.notifications import AttemptReport

# Items named in a reason at most; its tick log names them all.
SHOWN = 3


def listed(items: Sequence[str]) -> str:
    more = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def reason(parts: Iterable[str], idle: str) -> dg.SkipReason:
    """The parts that say something (empty ones are left out), or `idle` when none does."""
    said = [part for part in parts if part]
    return dg.SkipReason("; ".join(said) if said else idle)


def deliveries(reports: Sequence[AttemptReport]) -> list[str]:
    """What webhook attempts did: delivered, retried later, given up on (which, after how many attempts)."""
    delivered = [report.webhook_id for report in reports if not report.failed]
    retried = [report.webhook_id for report in reports if report.failed and not report.gave_up]
    gave_up = [f"{report.webhook_id} after {report.attempt} attempt(s)" for report in reports if report.gave_up]
    return [
        f"delivered {listed(delivered)}" if delivered else "",
        f"failed, retried later: {listed(retried)}" if retried else "",
        f"gave up on {listed(gave_up)}" if gave_up else "",
    ]
