"""The store's tables and the migration runner (under a lock, so processes migrate in turn).

A released step is frozen: its tables are declared by functions named for their version. SQLite,
which cannot drop a constraint, rebuilds a changed table. Node results are their own index: one
primary-key probe per node, where Dagster's event log grows with every run.
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
API_KEYS_TABLE = "video_pipelines_api_keys"
COUNTERS_TABLE = "video_pipelines_counters"
ATTEMPTS_TABLE = "video_pipelines_attempts"
NODE_RESULTS_TABLE = "video_pipelines_node_results"
NODE_CLAIMS_TABLE = "video_pipelines_node_claims"
EXECUTION_OUTCOMES_TABLE = "video_pipelines_execution_outcomes"
PROVIDER_WAITS_TABLE = "video_pipelines_provider_waits"
PROVIDER_CIRCUITS_TABLE = "video_pipelines_provider_circuits"
VIDEO_FETCHES_TABLE = "video_pipelines_video_fetches"
WORKERS_TABLE = "video_pipelines_workers"
# The tenant of everything that no API key scoped: operator submissions, runs launched through Dagster's doors.
DEFAULT_TENANT = "default"
# The webhook events a delivery can be for (see `webhooks.outbox.EVENTS`); frozen with step 3.
_EVENTS_V3 = ", ".join(
    f"'{event}'" for event in ("completed", "failed", "canceled", "execution.started", "node.completed", "node.failed")
)
# One delivery per (execution, event, node, attempt); abbreviated, since PostgreSQL cuts names at 63 characters.
_DELIVERIES_UNIQUE_V4 = "uq_video_pipelines_webhook_deliveries_exec_event_node_attempt"
_SUBMISSION_STATES_V1 = "state IN ('pending', 'launched', 'rejected', 'canceled')"
_SUBMISSION_STATES_V8 = "state IN ('pending', 'launching', 'launched', 'rejected', 'canceled')"
_ATTEMPT_STATES_V8 = "state IN ('pending', 'launching', 'launched', 'canceled')"
_ATTEMPT_REASONS_V9 = "reason IN ('resume', 'retry', 'continue')"
_WAIT_STATES_V9 = "state IN ('waiting', 'finished', 'collected', 'canceling', 'canceled')"
_CIRCUIT_STATES_V10 = "state IN ('closed', 'open', 'half_open')"
# One fixed 64-bit advisory-lock id for this schema, derived from its name so it is unlikely to meet another app's.
_ADVISORY_LOCK_ID = int.from_bytes(hashlib.sha256(VERSION_TABLE.encode()).digest()[:8], "big", signed=True)
_TIMESTAMP = sa.DateTime(timezone=True)

_metadata = sa.MetaData()

schema_version = sa.Table(
    VERSION_TABLE,
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", _TIMESTAMP, nullable=False),
)

Declare = Callable[[sa.MetaData, str], sa.Table]
Indexes = Callable[[sa.Table], list[sa.Index]]


def _submission_columns_v1() -> list[sa.Column[object]]:
    return [
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
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("launched_at", _TIMESTAMP),
    ]


def _submission_columns_v3() -> list[sa.Column[object]]:
    return [
        *_submission_columns_v1(),
        sa.Column("tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT),
        # The W3C traceparent of the execution's span (its trace id is the execution's trace).
        sa.Column("traceparent", sa.String(55)),
    ]


def _priority_check() -> sa.CheckConstraint:
    return sa.CheckConstraint("priority IN ('high', 'normal', 'low')", name="ck_video_pipelines_submissions_priority")


def _tenant_idempotency() -> sa.UniqueConstraint:
    # One idempotency key is one submission per tenant: two tenants never see each other's keys.
    return sa.UniqueConstraint("tenant", "idempotency_key", name="uq_video_pipelines_submissions_tenant_idempotency")


def _submissions_v1(metadata: sa.MetaData) -> sa.Table:
    table = sa.Table(
        SUBMISSIONS_TABLE,
        metadata,
        *_submission_columns_v1(),
        # The database, not a read-then-insert, is what makes one idempotency key one submission.
        sa.UniqueConstraint("idempotency_key", name="uq_video_pipelines_submissions_idempotency_key"),
        _priority_check(),
        sa.CheckConstraint(_SUBMISSION_STATES_V1, name="ck_video_pipelines_submissions_state"),
    )
    sa.Index("ix_video_pipelines_submissions_state_created", table.c.state, table.c.created_at)
    return table


def _submissions_v3(metadata: sa.MetaData, name: str = SUBMISSIONS_TABLE) -> sa.Table:
    """`name` is the table's name while SQLite rebuilds it; constraint and index names stay those of the real table."""
    return sa.Table(
        name,
        metadata,
        *_submission_columns_v3(),
        _tenant_idempotency(),
        _priority_check(),
        sa.CheckConstraint(_SUBMISSION_STATES_V1, name="ck_video_pipelines_submissions_state"),
    )


def _submissions_v3_indexes(table: sa.Table) -> list[sa.Index]:
    return [
        sa.Index("ix_video_pipelines_submissions_state_created", table.c.state, table.c.created_at),
        # A tenant's executions, newest first (`GET /api/executions`).
        sa.Index("ix_video_pipelines_submissions_tenant_execution", table.c.tenant, table.c.execution_id),
    ]


def _reshaped_v8(
    name: str,
    metadata: sa.MetaData,
    columns: list[sa.Column[object]],
    constraints: list[sa.Constraint],
    states: str,
    check: str,
) -> sa.Table:
    """A table as step 8 leaves it: `columns`, a cancel request, `constraints`, and a check of its new states."""
    return sa.Table(
        name,
        metadata,
        *columns,
        # When a cancel came after the plan sensor claimed the row: its run, once it exists, runs nothing.
        sa.Column("cancel_requested_at", _TIMESTAMP),
        *constraints,
        sa.CheckConstraint(states, name=check),
    )


def _submissions_v8(metadata: sa.MetaData, name: str = SUBMISSIONS_TABLE) -> sa.Table:
    columns: list[sa.Column[object]] = [*_submission_columns_v3(), sa.Column("request_digest", sa.String(64))]
    constraints: list[sa.Constraint] = [_tenant_idempotency(), _priority_check()]
    check = "ck_video_pipelines_submissions_state_v8"
    return _reshaped_v8(name, metadata, columns, constraints, _SUBMISSION_STATES_V8, check)


def _delivery_columns(event_length: int) -> list[sa.Column[object]]:
    return [
        sa.Column("webhook_id", sa.Text, primary_key=True),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("event", sa.String(event_length), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        # The exact JSON bytes sent, as UTF-8 text: signed afresh at each attempt, never changed.
        sa.Column("body", sa.Text, nullable=False),
        # Where the secret is found at send time ("submission" or "env:NAME"); never the secret itself.
        sa.Column("secret_source", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TIMESTAMP, nullable=False),
        sa.Column("lease_until", _TIMESTAMP),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("delivered_at", _TIMESTAMP),
        sa.Column("last_error", sa.Text),
    ]


def _delivery_checks(events: str, name: str) -> list[sa.CheckConstraint]:
    return [
        sa.CheckConstraint(f"event IN ({events})", name=name),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_video_pipelines_webhook_deliveries_state"
        ),
        sa.CheckConstraint(
            "secret_source IS NULL OR secret_source = 'submission' OR secret_source LIKE 'env:_%'",
            name="ck_video_pipelines_webhook_deliveries_secret_source",
        ),
    ]


def _webhook_tables_v2(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    deliveries = sa.Table(
        WEBHOOK_DELIVERIES_TABLE,
        metadata,
        *_delivery_columns(16),
        # One delivery per execution and event, whoever enqueues it and however often.
        sa.UniqueConstraint("execution_id", "event", name="uq_video_pipelines_webhook_deliveries_execution_event"),
        *_delivery_checks("'completed', 'failed', 'canceled'", "ck_video_pipelines_webhook_deliveries_event"),
    )
    _webhook_deliveries_v3_indexes(deliveries)
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
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("finished_at", _TIMESTAMP, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.UniqueConstraint("webhook_id", "number", name="uq_video_pipelines_webhook_attempts_number"),
    )
    return deliveries, attempts


def _delivery_columns_v3() -> list[sa.Column[object]]:
    # The plan node of a node.* event; '' for execution events (NULLs would not be unique).
    return [*_delivery_columns(32), sa.Column("node_id", sa.Text, nullable=False, server_default="")]


def _webhook_deliveries_v3(metadata: sa.MetaData, name: str = WEBHOOK_DELIVERIES_TABLE) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        *_delivery_columns_v3(),
        sa.UniqueConstraint(
            "execution_id", "event", "node_id", name="uq_video_pipelines_webhook_deliveries_execution_event_node"
        ),
        *_delivery_checks(_EVENTS_V3, "ck_video_pipelines_webhook_deliveries_event_v3"),
    )


def _webhook_deliveries_v3_indexes(table: sa.Table) -> list[sa.Index]:
    return [sa.Index("ix_video_pipelines_webhook_deliveries_due", table.c.state, table.c.next_attempt_at)]


def _webhook_deliveries_v4(metadata: sa.MetaData, name: str = WEBHOOK_DELIVERIES_TABLE) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        *_delivery_columns_v3(),
        # The run of the execution the event happened in: 1 for its first run (and every delivery made before step 4).
        sa.Column("attempt", sa.Integer, nullable=False, server_default=sa.text("1")),
        # Each attempt of an execution reports its own events.
        sa.UniqueConstraint("execution_id", "event", "node_id", "attempt", name=_DELIVERIES_UNIQUE_V4),
        *_delivery_checks(_EVENTS_V3, "ck_video_pipelines_webhook_deliveries_event_v3"),
        sa.CheckConstraint("attempt >= 1", name="ck_video_pipelines_webhook_deliveries_attempt"),
    )


def _attempt_columns_v4() -> list[sa.Column[object]]:
    return [
        # No foreign key to the submissions: an execution started through Dagster's doors has no submission.
        sa.Column("execution_id", sa.String(64), primary_key=True),
        # 2, 3, ...: attempt 1 is the execution's first run, which has no row.
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("reason", sa.String(16), nullable=False),
        # The run this attempt follows (the one whose worker died, or that failed or was canceled).
        sa.Column("previous_run_id", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("requested_at", _TIMESTAMP, nullable=False),
        sa.Column("launched_at", _TIMESTAMP),
    ]


def _attempt_checks() -> list[sa.CheckConstraint]:
    return [
        sa.CheckConstraint("number >= 2", name="ck_video_pipelines_attempts_number"),
        sa.CheckConstraint("reason IN ('resume', 'retry')", name="ck_video_pipelines_attempts_reason"),
    ]


def _attempts_v4(metadata: sa.MetaData) -> sa.Table:
    table = sa.Table(
        ATTEMPTS_TABLE,
        metadata,
        *_attempt_columns_v4(),
        *_attempt_checks(),
        sa.CheckConstraint("state IN ('pending', 'launched', 'canceled')", name="ck_video_pipelines_attempts_state"),
    )
    _attempts_v4_indexes(table)
    return table


def _attempts_v4_indexes(table: sa.Table) -> list[sa.Index]:
    # The plan sensor's question: which attempts wait to be launched, oldest first.
    return [sa.Index("ix_video_pipelines_attempts_state_requested", table.c.state, table.c.requested_at)]


def _attempts_v8(metadata: sa.MetaData, name: str = ATTEMPTS_TABLE) -> sa.Table:
    columns: list[sa.Column[object]] = [*_attempt_columns_v4(), sa.Column("outcome", sa.String(16))]
    check = "ck_video_pipelines_attempts_state_v8"
    return _reshaped_v8(name, metadata, columns, [*_attempt_checks()], _ATTEMPT_STATES_V8, check)


def _api_key_columns_v3() -> list[sa.Column[object]]:
    return [
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        # SHA-256 (hex) of the whole key: a key is a 256-bit random token, so a fast hash looked up
        # by equality is enough; the key itself is never stored.
        sa.Column("key_hash", sa.String(64), nullable=False),
        # The key's first characters, to recognise it in `api-keys list` (not enough to use it).
        sa.Column("key_prefix", sa.String(24), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("revoked_at", _TIMESTAMP),
        sa.Column("last_used_at", _TIMESTAMP),
    ]


def _api_keys_unique() -> sa.UniqueConstraint:
    return sa.UniqueConstraint("key_hash", name="uq_video_pipelines_api_keys_key_hash")


def _tenancy_v3(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    api_keys = sa.Table(API_KEYS_TABLE, metadata, *_api_key_columns_v3(), _api_keys_unique())
    counters = sa.Table(
        COUNTERS_TABLE,
        metadata,
        # A Prometheus sample kept in the database, so every process (API, daemon, run workers) adds to one count.
        sa.Column("metric", sa.String(128), primary_key=True),
        # The sample's labels as canonical JSON (sorted keys), '{}' without labels.
        sa.Column("labels", sa.Text, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )
    return api_keys, counters


def _api_keys_v11(metadata: sa.MetaData) -> sa.Table:
    """Step 3's keys and whether one is an operator's: it sees every tenant, the workers and the queue."""
    operator = sa.Column("operator", sa.Boolean, nullable=False, server_default=sa.false())
    return sa.Table(API_KEYS_TABLE, metadata, *_api_key_columns_v3(), operator, _api_keys_unique())


def _lineage_columns() -> list[sa.Column[object]]:
    return [
        # Reuse never crosses tenants: a tenant's lineage is found only under its own name.
        sa.Column("tenant", sa.String(64), primary_key=True),
        # The sha256 hex of the node's lineage (`plan.lineage`).
        sa.Column("lineage", sa.String(64), primary_key=True),
        # Where it was (or is being) computed: the execution, its plan node and (below) the Dagster run.
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.Text, nullable=False),
    ]


def _node_results_v5(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    results = sa.Table(
        NODE_RESULTS_TABLE,
        metadata,
        *_lineage_columns(),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        # The video result's wire dict (`plan.results.VideoResult.to_wire`).
        sa.Column("result", sa.JSON, nullable=False),
        # What computing it cost, so a reuse can say what it saved.
        sa.Column("cost_usd", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("recorded_at", _TIMESTAMP, nullable=False),
        sa.CheckConstraint("cost_usd >= 0", name="ck_video_pipelines_node_results_cost_usd"),
    )
    claims = sa.Table(
        NODE_CLAIMS_TABLE,
        metadata,
        # The primary key is what makes one claim per (tenant, lineage), also when processes race.
        *_lineage_columns(),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("claimed_at", _TIMESTAMP, nullable=False),
    )
    return results, claims


def _execution_outcomes_v7(metadata: sa.MetaData) -> sa.Table:
    table = sa.Table(
        EXECUTION_OUTCOMES_TABLE,
        metadata,
        # No foreign key to the submissions: an execution started through Dagster's doors has no submission.
        sa.Column("execution_id", sa.String(64), primary_key=True),
        # The span id (16 hex digits) of the caller's span, from the submitting request's traceparent.
        sa.Column("parent_span_id", sa.String(16)),
        # When its first run started; NULL until then.
        sa.Column("started_at", _TIMESTAMP),
        # How the execution first ended (completed, failed, canceled) and when; NULL until then.
        sa.Column("status", sa.String(16)),
        sa.Column("ended_at", _TIMESTAMP),
    )
    # The metrics' GROUP BY status, read from the index alone.
    sa.Index("ix_video_pipelines_execution_outcomes_status", table.c.status)
    return table


def _attempts_v9(metadata: sa.MetaData, name: str = ATTEMPTS_TABLE) -> sa.Table:
    columns: list[sa.Column[object]] = [*_attempt_columns_v4(), sa.Column("outcome", sa.String(16))]
    checks: list[sa.Constraint] = [
        sa.CheckConstraint("number >= 2", name="ck_video_pipelines_attempts_number"),
        sa.CheckConstraint(_ATTEMPT_REASONS_V9, name="ck_video_pipelines_attempts_reason_v9"),
    ]
    return _reshaped_v8(name, metadata, columns, checks, _ATTEMPT_STATES_V8, "ck_video_pipelines_attempts_state_v8")


def _provider_waits_v9(metadata: sa.MetaData) -> sa.Table:
    table = sa.Table(
        PROVIDER_WAITS_TABLE,
        metadata,
        # A provider's job id is unique at that provider: what its webhook names.
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(256), primary_key=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.Text, nullable=False),
        # The run that parked last: its end is what a continuation follows.
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", _TIMESTAMP, nullable=False),
        sa.Column("next_check_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.CheckConstraint(_WAIT_STATES_V9, name="ck_video_pipelines_provider_waits_state"),
    )
    # The poller's question (which waits are due), and an execution's waits.
    sa.Index("ix_video_pipelines_provider_waits_due", table.c.state, table.c.next_check_at)
    sa.Index("ix_video_pipelines_provider_waits_execution", table.c.execution_id)
    return table


def _provider_circuits_v10(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        PROVIDER_CIRCUITS_TABLE,
        metadata,
        # One circuit per provider for the whole deployment: every worker reads and moves the same row.
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        # Transient failures in a row since the last success (or since the circuit last opened).
        sa.Column("failures", sa.Integer, nullable=False),
        # When it last opened (open and half_open); NULL when closed.
        sa.Column("opened_at", _TIMESTAMP),
        # half_open: until when the one call let through is the probe; after that another caller may probe.
        sa.Column("probe_until", _TIMESTAMP),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.CheckConstraint(_CIRCUIT_STATES_V10, name="ck_video_pipelines_provider_circuits_state"),
        sa.CheckConstraint("failures >= 0", name="ck_video_pipelines_provider_circuits_failures"),
    )


def _video_fetches_v12(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        VIDEO_FETCHES_TABLE,
        metadata,
        # A stored video by its content address: the API's `/artifacts` route knows the SHA-256 in the URL, not
        # who asked (the URL needs no key), so one row counts every tenant's fetches of the same bytes.
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("first_fetched_at", _TIMESTAMP, nullable=False),
        sa.Column("last_fetched_at", _TIMESTAMP, nullable=False),
        # Fetches recorded: one per client per window (see `submissions.fetches`), not one per range request.
        sa.Column("fetches", sa.Integer, nullable=False),
        sa.CheckConstraint("fetches >= 1", name="ck_video_pipelines_video_fetches_fetches"),
    )


def _workers_v13(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        WORKERS_TABLE,
        metadata,
        # One row per run worker (its Celery node name), written by its main process every few seconds.
        sa.Column("name", sa.String(255), primary_key=True),
        # JSON lists: the queues it consumes, the Celery task ids its children run now (their number: `active`),
        # those it received and holds until a child is free.
        sa.Column("queues", sa.Text, nullable=False),
        sa.Column("tasks", sa.Text, nullable=False),
        sa.Column("waiting", sa.Text, nullable=False, server_default="[]"),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("last_seen", _TIMESTAMP, nullable=False),
        sa.CheckConstraint("concurrency >= 0", name="ck_video_pipelines_workers_concurrency"),
    )


def _rebuild_sqlite(connection: sa.Connection, declare: Declare, indexes: Indexes, name: str, version: int) -> None:
    """Give SQLite table `name` the shape `declare` makes, keeping its rows (built as a new table, then renamed)."""
    temporary = f"{name}_v{version}_new"
    new = declare(sa.MetaData(), temporary)
    new.create(connection)
    kept = [column for column in sa.inspect(connection).get_columns(name) if column["name"] in new.c]
    columns = ", ".join(f'"{column["name"]}"' for column in kept)
    connection.exec_driver_sql(f'INSERT INTO "{temporary}" ({columns}) SELECT {columns} FROM "{name}"')
    connection.exec_driver_sql(f'DROP TABLE "{name}"')
    # Tables that reference `name` (the attempts' foreign key) name it as text: they find the renamed table.
    connection.exec_driver_sql(f'ALTER TABLE "{temporary}" RENAME TO "{name}"')
    for index in indexes(declare(sa.MetaData(), name)):
        index.create(connection)


@dataclass(frozen=True)
class Migration:
    """One step: `postgres` statements on PostgreSQL, or the tables SQLite rebuilds (`sqlite`: how each is declared,
    its indexes and its name); then `both` statements; then the new tables `create` declares."""

    version: int
    description: str
    postgres: tuple[str, ...] = ()
    sqlite: tuple[tuple[Declare, Indexes, str], ...] = ()
    both: tuple[str, ...] = ()
    create: tuple[Callable[[sa.MetaData], object], ...] = ()

    def apply(self, connection: sa.Connection) -> None:
        if connection.dialect.name == "postgresql":
            for statement in self.postgres:
                connection.exec_driver_sql(statement)
        else:
            for declare, indexes, name in self.sqlite:
                _rebuild_sqlite(connection, declare, indexes, name, self.version)
        for statement in self.both:
            connection.exec_driver_sql(statement)
        metadata = sa.MetaData()
        for declare_new in self.create:
            declare_new(metadata)
        metadata.create_all(connection)


_S, _D, _A = SUBMISSIONS_TABLE, WEBHOOK_DELIVERIES_TABLE, ATTEMPTS_TABLE
_POSTGRES_V3 = (
    f"ALTER TABLE {_S} ADD COLUMN tenant VARCHAR(64) NOT NULL DEFAULT '{DEFAULT_TENANT}'",
    f"ALTER TABLE {_S} ADD COLUMN traceparent VARCHAR(55)",
    f"ALTER TABLE {_S} DROP CONSTRAINT uq_video_pipelines_submissions_idempotency_key",
    f"ALTER TABLE {_S} ADD CONSTRAINT uq_video_pipelines_submissions_tenant_idempotency "
    "UNIQUE (tenant, idempotency_key)",
    f"CREATE INDEX ix_video_pipelines_submissions_tenant_execution ON {_S} (tenant, execution_id)",
    f"ALTER TABLE {_D} ALTER COLUMN event TYPE VARCHAR(32)",
    f"ALTER TABLE {_D} ADD COLUMN node_id TEXT NOT NULL DEFAULT ''",
    f"ALTER TABLE {_D} DROP CONSTRAINT ck_video_pipelines_webhook_deliveries_event",
    f"ALTER TABLE {_D} ADD CONSTRAINT ck_video_pipelines_webhook_deliveries_event_v3 CHECK (event IN ({_EVENTS_V3}))",
    f"ALTER TABLE {_D} DROP CONSTRAINT uq_video_pipelines_webhook_deliveries_execution_event",
    f"ALTER TABLE {_D} ADD CONSTRAINT uq_video_pipelines_webhook_deliveries_execution_event_node "
    "UNIQUE (execution_id, event, node_id)",
)
_POSTGRES_V4 = (
    f"ALTER TABLE {_D} ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
    f"ALTER TABLE {_D} ADD CONSTRAINT ck_video_pipelines_webhook_deliveries_attempt CHECK (attempt >= 1)",
    f"ALTER TABLE {_D} DROP CONSTRAINT uq_video_pipelines_webhook_deliveries_execution_event_node",
    f"ALTER TABLE {_D} ADD CONSTRAINT {_DELIVERIES_UNIQUE_V4} UNIQUE (execution_id, event, node_id, attempt)",
)
_POSTGRES_V8 = tuple(
    statement
    for table, states in ((_S, _SUBMISSION_STATES_V8), (_A, _ATTEMPT_STATES_V8))
    for statement in (
        f"ALTER TABLE {table} ADD COLUMN cancel_requested_at TIMESTAMP WITH TIME ZONE",
        f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_state",
        f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_state_v8 CHECK ({states})",
    )
)

# The current shape of the tables, for queries (see the module docstring).
submissions = _submissions_v8(_metadata)
_, webhook_attempts = _webhook_tables_v2(sa.MetaData())
webhook_deliveries = _webhook_deliveries_v4(_metadata)
webhook_attempts = webhook_attempts.to_metadata(_metadata)
_, counters = _tenancy_v3(sa.MetaData())
counters = counters.to_metadata(_metadata)
api_keys = _api_keys_v11(_metadata)
execution_attempts = _attempts_v9(_metadata)
node_results, node_claims = _node_results_v5(_metadata)
execution_outcomes = _execution_outcomes_v7(_metadata)
provider_waits = _provider_waits_v9(_metadata)
provider_circuits = _provider_circuits_v10(_metadata)
video_fetches = _video_fetches_v12(_metadata)
workers = _workers_v13(_metadata)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "submissions table", create=(_submissions_v1,)),
    Migration(2, "webhook deliveries and attempts", create=(_webhook_tables_v2,)),
    Migration(
        3,
        "tenants, API keys, webhook events per node, counters",
        postgres=_POSTGRES_V3,
        sqlite=(
            (_submissions_v3, _submissions_v3_indexes, _S),
            (_webhook_deliveries_v3, _webhook_deliveries_v3_indexes, _D),
        ),
        create=(_tenancy_v3,),
    ),
    Migration(
        4,
        "execution attempts, webhook deliveries per attempt",
        postgres=_POSTGRES_V4,
        # The deliveries' index is unchanged since step 3.
        sqlite=((_webhook_deliveries_v4, _webhook_deliveries_v3_indexes, _D),),
        create=(_attempts_v4,),
    ),
    Migration(5, "node results by lineage, node claims", create=(_node_results_v5,)),
    # Nullable without a default: an in-place ADD COLUMN on PostgreSQL and SQLite alike.
    Migration(
        6,
        "the request digest of each submission (idempotency keys)",
        both=(f"ALTER TABLE {_S} ADD COLUMN request_digest VARCHAR(64)",),
    ),
    Migration(
        7,
        "execution and attempt outcomes, claimed once; the caller's span",
        both=(f"ALTER TABLE {_A} ADD COLUMN outcome VARCHAR(16)",),
        create=(_execution_outcomes_v7,),
    ),
    Migration(
        8,
        "launch claims and cancel requests",
        postgres=_POSTGRES_V8,
        sqlite=((_submissions_v8, _submissions_v3_indexes, _S), (_attempts_v8, _attempts_v4_indexes, _A)),
    ),
    Migration(
        9,
        "provider jobs that parked nodes wait on; attempts that continue them",
        postgres=(
            f"ALTER TABLE {_A} DROP CONSTRAINT ck_video_pipelines_attempts_reason",
            f"ALTER TABLE {_A} ADD CONSTRAINT ck_video_pipelines_attempts_reason_v9 CHECK ({_ATTEMPT_REASONS_V9})",
        ),
        sqlite=((_attempts_v9, _attempts_v4_indexes, _A),),
        create=(_provider_waits_v9,),
    ),
    Migration(10, "provider circuit breakers shared by the deployment", create=(_provider_circuits_v10,)),
    # Every existing key stays a tenant's: none becomes an operator's by migrating.
    Migration(
        11,
        "operator API keys",
        both=(f"ALTER TABLE {API_KEYS_TABLE} ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE",),
    ),
    # Its `applied_at` is when fetches began to be recorded: a video made before then may have been fetched unseen.
    Migration(12, "fetches of stored videos through the API", create=(_video_fetches_v12,)),
    Migration(13, "run workers' heartbeats", create=(_workers_v13,)),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
# Every step's version in the order applied (a database at SCHEMA_VERSION has recorded each of them).
VERSIONS = tuple(step.version for step in MIGRATIONS)


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
