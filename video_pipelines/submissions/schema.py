"""The store's tables and the migration runner that creates and upgrades them.

Every table name starts with `video_pipelines_`, so the store can share a database with
Dagster's own tables. `video_pipelines_schema_version` has one row per applied migration;
the schema version is its highest `version`.

`migrate` applies the missing steps of `MIGRATIONS`, in order, in one transaction that
holds a lock for its whole length, so processes starting at once migrate one after the
other and the later ones find nothing left to do:
- PostgreSQL: `pg_advisory_xact_lock` (released by the commit or the rollback; DDL is
  transactional, so a failed step leaves nothing behind);
- SQLite: the write lock taken by `BEGIN IMMEDIATE` (see `store._sqlite_on_begin`).

A step is frozen once released: it declares its tables in a function of its own
(`_submissions_v1`, `_webhook_tables_v2`) that no later change touches. The tables the
store and the outbox query (`submissions`, `webhook_deliveries`, `webhook_attempts`) are
built from those declarations because no step has changed a table yet; a step that does
declares the new current shape below instead, and leaves the old declarations as they are.
A change of schema is a new step with the next version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from video_pipelines.errors import SubmissionStoreError

SUBMISSIONS_TABLE = "video_pipelines_submissions"
VERSION_TABLE = "video_pipelines_schema_version"
WEBHOOK_DELIVERIES_TABLE = "video_pipelines_webhook_deliveries"
WEBHOOK_ATTEMPTS_TABLE = "video_pipelines_webhook_attempts"
# One fixed 64-bit advisory-lock id for this schema, derived from its name so it is unlikely to meet another app's.
_ADVISORY_LOCK_ID = int.from_bytes(hashlib.sha256(VERSION_TABLE.encode()).digest()[:8], "big", signed=True)

_metadata = sa.MetaData()

schema_version = sa.Table(
    VERSION_TABLE,
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _submissions_v1(metadata: sa.MetaData) -> sa.Table:
    """The submissions table as migration 1 creates it."""
    table = sa.Table(
        SUBMISSIONS_TABLE,
        metadata,
        sa.Column("execution_id", sa.String(64), primary_key=True),
        # The plan's wire JSON, never with a webhook secret in it.
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("base_execution_id", sa.Text),
        sa.Column("webhook_url", sa.Text),
        # A Fernet token; the key is never in the database.
        sa.Column("webhook_secret_token", sa.Text),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True)),
        # The database, not a read-then-insert, is what makes one idempotency key one submission.
        sa.UniqueConstraint("idempotency_key", name="uq_video_pipelines_submissions_idempotency_key"),
        sa.CheckConstraint("priority IN ('high', 'normal', 'low')", name="ck_video_pipelines_submissions_priority"),
        sa.CheckConstraint(
            "state IN ('pending', 'launched', 'rejected', 'canceled')", name="ck_video_pipelines_submissions_state"
        ),
    )
    sa.Index("ix_video_pipelines_submissions_state_created", table.c.state, table.c.created_at)
    return table


def _webhook_tables_v2(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The webhook deliveries and attempts tables as migration 2 creates them."""
    timestamp = sa.DateTime(timezone=True)
    deliveries = sa.Table(
        WEBHOOK_DELIVERIES_TABLE,
        metadata,
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        # The exact JSON bytes sent, as UTF-8 text: signed afresh at each attempt, never changed.
        sa.Column("body", sa.Text, nullable=False),
        # Where the secret is found at send time ("submission" or "env:NAME"); never the secret itself.
        sa.Column("secret_source", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", timestamp, nullable=False),
        sa.Column("lease_until", timestamp),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("delivered_at", timestamp),
        sa.Column("last_error", sa.Text),
        # One delivery per execution and event, whoever enqueues it and however often.
        sa.UniqueConstraint("execution_id", "event", name="uq_video_pipelines_webhook_deliveries_execution_event"),
        sa.CheckConstraint(
            "event IN ('completed', 'failed', 'canceled')", name="ck_video_pipelines_webhook_deliveries_event"
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_video_pipelines_webhook_deliveries_state"
        ),
        sa.CheckConstraint(
            "secret_source IS NULL OR secret_source = 'submission' OR secret_source LIKE 'env:_%'",
            name="ck_video_pipelines_webhook_deliveries_secret_source",
        ),
    )
    sa.Index("ix_video_pipelines_webhook_deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)
    attempts = sa.Table(
        WEBHOOK_ATTEMPTS_TABLE,
        metadata,
        # INTEGER on SQLite, where only that type is an auto-incrementing rowid alias.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column(
            "webhook_id",
            sa.Text,
            sa.ForeignKey(deliveries.c.webhook_id, name="fk_video_pipelines_webhook_attempts_webhook_id"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.UniqueConstraint("webhook_id", "number", name="uq_video_pipelines_webhook_attempts_number"),
    )
    return deliveries, attempts


def _create_submissions(connection: sa.Connection) -> None:
    metadata = sa.MetaData()
    _submissions_v1(metadata)
    metadata.create_all(connection)


def _create_webhook_deliveries(connection: sa.Connection) -> None:
    metadata = sa.MetaData()
    _webhook_tables_v2(metadata)
    metadata.create_all(connection)


# The current shape of the tables, for queries (see the module docstring).
submissions = _submissions_v1(_metadata)
webhook_deliveries, webhook_attempts = _webhook_tables_v2(_metadata)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "submissions table", _create_submissions),
    Migration(2, "webhook deliveries and attempts", _create_webhook_deliveries),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def current_version(connection: sa.Connection) -> int:
    """The highest applied migration, 0 for a database the store never touched."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return 0
    version = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(version or 0)


def migrate(engine: sa.Engine) -> int:
    """Bring the database to `SCHEMA_VERSION`; returns it. Safe to run from several processes at once."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        schema_version.create(connection, checkfirst=True)
        version = current_version(connection)
        if version > SCHEMA_VERSION:
            raise SubmissionStoreError(
                f"the submission store's schema is at version {version}, newer than this video-pipelines "
                f"knows ({SCHEMA_VERSION}); upgrade video-pipelines"
            )
        for step in MIGRATIONS:
            if step.version > version:
                step.apply(connection)
                connection.execute(
                    schema_version.insert().values(
                        version=step.version, description=step.description, applied_at=datetime.now(UTC)
                    )
                )
    return SCHEMA_VERSION
