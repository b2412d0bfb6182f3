"""An execution's log: the lines of its runs' event logs (the orchestrator's and our ops'), oldest first, each
with the plan node it belongs to, read a page at a time after a cursor, with every secret we know blanked.

A cursor is `<run id>.<position>`: the run of the last line read and that line's position in its run's log
(the event log's storage id). The runs of an execution only grow (a retry adds one), so a cursor stays valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from video_pipelines.errors import ExecutionNotFound, UsageError
from video_pipelines.executions.records import RunRecords, RunView
from video_pipelines.executions.status import execution_status
from video_pipelines.providers import REMOTE_PROVIDERS
from video_pipelines.submissions import SubmissionStore

MAX_LINES = 1000
# `<run id>.<position>`: a Dagster run id (a UUID) and a storage id.
LOG_CURSOR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[0-9]{1,18}$")
REDACTED = "[redacted]"
_LEVELS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
# What a secret looks like when we do not know its value: our API keys, Replicate tokens, credentials after an
# Authorization scheme, and URL query strings (pre-signed URLs carry their signature there).
_TOKENS = re.compile(r"\bvp_[A-Za-z0-9_-]{16,}|\br8_[A-Za-z0-9]{16,}")
_CREDENTIALS = re.compile(r"(?i)\b((?:bearer|token|key)\s+)[A-Za-z0-9._~+/=:-]{16,}")
_QUERIES = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]+")
# Credentials whose value is a path, not a secret: blanking it would hide nothing and mangle messages.
_PATH_CREDENTIALS = {"GOOGLE_APPLICATION_CREDENTIALS"}
# Shorter values are too likely to occur in text by chance (and no real secret is that short).
_MIN_SECRET_LENGTH = 8


def level_name(level: int) -> str:
    """A Python logging level as the log's `level`: debug, info, warning, error or critical."""
    return _LEVELS.get(level - level % 10, "info") if level >= 10 else "debug"


@dataclass(frozen=True)
class LogLine:
    """One line of an execution's log."""

    at: datetime
    level: str
    node: str | None  # the plan node whose step wrote it; None for the run's own lines
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "at": self.at.astimezone(UTC).isoformat(),
            "level": self.level,
            "node": self.node,
            "message": self.message,
        }


@dataclass(frozen=True)
class RunLogLine:
    """A line as a run's records hold it: its position in that run's log, and the line."""

    position: int
    line: LogLine


@runtime_checkable
class LogRecords(Protocol):
    """Records that also hold the lines of each run's log."""

    def run_log(self, run: RunView, after: int | None, limit: int) -> list[RunLogLine]:
        """Up to `limit` lines of `run`'s log after position `after` (from the start when None), oldest first."""


@dataclass(frozen=True)
class LogRead:
    """Lines read after a cursor, each with the cursor that reads on after it; `ended`: the execution had ended
    before they were read, so a page shorter than asked was the last."""

    lines: list[tuple[str, LogLine]]
    cursor: str | None  # the cursor after the last line (the one given when there was none)
    ended: bool

    def to_wire(self) -> dict[str, Any]:
        """The page of `GET /api/execute/{id}/logs` and `video-pipelines logs --json`."""
        return {"logs": [line.to_wire() for _, line in self.lines], "cursor": self.cursor}

    def is_last(self, limit: int) -> bool:
        """Whether nothing can follow: the execution had ended and the page is not full."""
        return self.ended and len(self.lines) < limit


class Redactor:
    """Blanks the secrets we know by value (the execution's webhook secret, the provider credentials) and those
    we know by shape (our API keys, Replicate tokens, credentials after an Authorization scheme, URL query strings)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        known = {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_LENGTH}
        # Longest first: a secret that contains another is blanked whole.
        self._known = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._known:
            text = text.replace(secret, REDACTED)
        text = _TOKENS.sub(REDACTED, text)
        text = _CREDENTIALS.sub(rf"\1{REDACTED}", text)
        return _QUERIES.sub(rf"\1?{REDACTED}", text)


def execution_redactor(store: SubmissionStore | None, execution_id: str) -> Redactor:
    """The redactor of an execution's log: its webhook secret and this process's provider credentials."""
    credentials = [
        os.environ.get(name, "").strip() for name in REMOTE_PROVIDERS.values() if name not in _PATH_CREDENTIALS
    ]
    webhook = store.webhook_secret(execution_id) if store is not None else None
    return Redactor([webhook, *credentials])


def _parse_cursor(cursor: str, execution_id: str, runs: Sequence[RunView]) -> tuple[int, int]:
    run_id, _, position = cursor.rpartition(".")
    if not position.isdigit():
        raise UsageError(f"cursor {cursor!r} is not a log cursor (<run id>.<position>); give the cursor of a page")
    for index, run in enumerate(runs):
        if run.run_id == run_id:
            return index, int(position)
    # Well formed, but of no run of this execution: a position that is not there.
    raise ExecutionNotFound(f"no line of execution {execution_id}'s log has the cursor {cursor!r}")


def read_logs(
    records: RunRecords,
    store: SubmissionStore | None,
    execution_id: str,
    *,
    cursor: str | None = None,
    limit: int = 200,
    redact: Redactor | None = None,
) -> LogRead:
    """Up to `limit` (1 to 1000) lines of the execution's log after `cursor`. Raises UsageError for a malformed
    cursor or a bad limit, ExecutionNotFound for a cursor of another execution; an execution whose records keep no
    log reads as an empty one."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LINES:
        raise UsageError(f"limit must be an integer from 1 to {MAX_LINES}; got {limit!r}")
    # Read before the lines: an execution that had ended then has all its lines written.
    ended = execution_status(records, store, execution_id).is_terminal
    if not isinstance(records, LogRecords):
        return LogRead([], cursor, ended)
    redact = redact or execution_redactor(store, execution_id)
    runs = records.execution_runs(execution_id)
    start, after = _parse_cursor(cursor, execution_id, runs) if cursor else (0, None)
    lines: list[tuple[str, LogLine]] = []
    for run in runs[start:]:
        for entry in records.run_log(run, after, limit - len(lines)):
            line = LogLine(entry.line.at, entry.line.level, entry.line.node, redact(entry.line.message))
            lines.append((f"{run.run_id}.{entry.position}", line))
        if len(lines) >= limit:
            break
        after = None
    return LogRead(lines, lines[-1][0] if lines else cursor, ended)
