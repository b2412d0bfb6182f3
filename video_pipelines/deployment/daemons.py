"""Whether dagster-daemon beats: one rule for `/health` and for `submit`, which reads the heartbeats from the
instance's run storage without importing Dagster (opening an instance cost a local `submit` seconds).

Dagster keeps one row per daemon type in its run storage's `daemon_heartbeats` table, the heartbeat serialized
as JSON in `body` (its `timestamp` in epoch seconds): in `history/runs.db` under DAGSTER_HOME on the embedded
default, in the deployment's PostgreSQL database in production.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import sqlalchemy as sa
import yaml

from video_pipelines.deployment.instance import POSTGRES_STORAGE
from video_pipelines.submissions.store import SubmissionStore

# Dagster's daemons beat every 30 s: two missed beats and the daemon is down.
DAEMON_MAX_AGE_SECONDS = 60.0
# The daemons a submission waits for: the sensor daemon launches it, the run queue's starts its run.
LAUNCHING_DAEMONS = ("SENSOR", "QUEUED_RUN_COORDINATOR")
_SELECT_BEATS = "SELECT body FROM daemon_heartbeats"


def stale_daemons(beats: Mapping[str, float], required: Iterable[str], max_age_seconds: float, now: float) -> list[str]:
    """Each required daemon type without a heartbeat in the last `max_age_seconds`, and why; empty when all beat."""
    stale: list[str] = []
    for daemon_type in required:
        beat = beats.get(daemon_type)
        if beat is None:
            stale.append(f"{daemon_type} (no heartbeat)")
        elif now - beat > max_age_seconds:
            stale.append(f"{daemon_type} (last heartbeat {now - beat:.0f} s ago)")
    return stale


def _beats(bodies: Iterable[str]) -> dict[str, float]:
    beats: dict[str, float] = {}
    for body in bodies:
        beat = json.loads(body)
        beats[str(beat["daemon_type"])] = float(beat["timestamp"])
    return beats


def _sqlite_bodies(database: Path) -> list[str]:
    if not database.is_file():
        return []  # no daemon (nor anything else) has used this instance yet
    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as connection:
        try:
            return [row[0] for row in connection.execute(_SELECT_BEATS)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def _database_bodies(store: SubmissionStore) -> list[str]:
    with store.reader.connect() as connection:
        if not sa.inspect(connection).has_table("daemon_heartbeats"):
            return []
        return [row[0] for row in connection.execute(sa.text(_SELECT_BEATS))]


def read_heartbeats(home: Path, store: SubmissionStore) -> dict[str, float] | None:
    """Each daemon type's last heartbeat (epoch seconds) in the run storage of the instance at `home`, whose
    `store` shares its database in production; None when its dagster.yaml keeps run storage elsewhere."""
    config_file = home / "dagster.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
    config = config if isinstance(config, dict) else {}
    if "run_storage" in config:
        return None
    storage = config.get("storage")
    if storage is None:
        return _beats(_sqlite_bodies(home / "history" / "runs.db"))
    if storage == POSTGRES_STORAGE:
        return _beats(_database_bodies(store))
    return None
