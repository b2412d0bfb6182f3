"""The submission store: plans kept until launched; each move one conditional UPDATE, so one racer wins.

pending ──claim──> launching ──mark_launched──> launched
   ├───mark_rejected──> rejected
   └───cancel_pending─> canceled
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import sqlalchemy as sa
from sqlalchemy import event
from ulid import ULID

from video_pipelines.errors import IdempotencyKeyReused, SecretKeyError, SubmissionStoreError
from video_pipelines.plan.lineage import canonical_json
from video_pipelines.plan.overrides import NO_OPTIONS, SubmitOptions
from video_pipelines.submissions.database_url import DATABASE_URL_ENV, DEFAULT_HOME, psycopg2_url
from video_pipelines.submissions.pooling import ping_when_idle
from video_pipelines.submissions.rows import Rows, record
from video_pipelines.submissions.schema import DEFAULT_TENANT, SCHEMA_VERSION, current_version, migrate, submissions
from video_pipelines.vocabulary import Priority

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

DATABASE_FILE_NAME = "video_pipelines.db"
PRIORITIES: Final = tuple(priority.value for priority in Priority)
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_SQLITE_BUSY_TIMEOUT_S = 30.0
_POSTGRES_CONNECT_TIMEOUT_S = 10
# Execution option of the engine that only reads: on SQLite it begins a plain (deferred)
# transaction, so readers do not queue behind writers.
_READ_ONLY_OPTION = "video_pipelines_read_only"


# Webhook secrets are encrypted at rest with Fernet (a token under another key, or altered, is refused, not
# garbled). A key is a Fernet key or a passphrase, derived by scrypt with a fixed salt so every process given it
# derives the same key; surrounding whitespace is ignored.
SECRET_KEY_ENV = "VIDEO_PIPELINES_SECRET_KEY"  # noqa: S105 (the name of the variable, not a key)
KEY_FILE_NAME = "video_pipelines_secret.key"
PASSPHRASE_SALT = b"video_pipelines/submissions/webhook-secret/v1"
_FERNET_KEY_CHARS = 44
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
# scrypt needs 128 * r * n bytes (32 MiB here), above hashlib's default 32 MiB cap with its overhead.
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def fernet_key(material: bytes | str) -> bytes:
    """The Fernet key `material` stands for: a Fernet key as it is, anything else as a passphrase."""
    raw = (material.encode("utf-8") if isinstance(material, str) else bytes(material)).strip()
    if not raw:
        raise SecretKeyError(f"the webhook-secret key is empty; set {SECRET_KEY_ENV} to a Fernet key or a passphrase")
    # binascii.Error, a bad base64 key, is a ValueError.
    with contextlib.suppress(ValueError):
        if len(raw) == _FERNET_KEY_CHARS and len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    derived = hashlib.scrypt(
        raw, salt=PASSPHRASE_SALT, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return base64.urlsafe_b64encode(derived)


def _read_key_file(path: Path) -> bytes:
    try:
        material = path.read_bytes()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the webhook-secret key file {path}: {exc.strerror}") from None
    if not material.strip():
        raise SecretKeyError(
            f"the webhook-secret key file {path} is empty; restore it from a backup, or set {SECRET_KEY_ENV}"
        )
    return fernet_key(material)


def load_or_create_key_file(path: Path) -> bytes:
    """The key in `path`, or a new one written there (0600): racers hard-link a private temporary file into
    place, so all but the first read its key, never half written."""
    if path.exists():
        return _read_key_file(path)
    from cryptography.fernet import Fernet  # loaded only for a secret, as in SecretBox._cipher

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        temp.unlink(missing_ok=True)
    # Losing the key loses every stored secret: make the new directory entry durable too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key


class SecretBox:
    """Encrypts and decrypts webhook secrets with one Fernet key, resolved at the first use: a store
    that never sees a secret never needs a key."""

    def __init__(self, resolve_key: Callable[[], bytes]) -> None:
        self._resolve_key = resolve_key
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> Fernet:
        from cryptography.fernet import Fernet  # here and in decrypt: a submission without a secret loads no cipher

        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._resolve_key())
            return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return self._cipher().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> str:
        """The plaintext of `token`; `what` names the secret in the error when the key does not fit."""
        from cryptography.fernet import InvalidToken  # as in _cipher

        try:
            return self._cipher().decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt {what}: the current key is not the one it was encrypted with (or the stored "
                f"value was altered); set {SECRET_KEY_ENV} (or the key file) to the key used when it was submitted"
            ) from None


class SubmissionState(StrEnum):
    PENDING = "pending"
    LAUNCHING = "launching"  # claimed by the plan sensor, which asked for its run; the run may not exist yet
    LAUNCHED = "launched"
    REJECTED = "rejected"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Submission:
    """One submitted plan and where it stands. Never holds the webhook secret (see `webhook_secret`)."""

    execution_id: str
    plan: dict[str, Any]
    base_execution_id: str | None
    webhook_url: str | None
    has_webhook_secret: bool
    priority: str
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    state: SubmissionState = SubmissionState.PENDING
    error: str | None = None
    run_id: str | None = None
    launched_at: datetime | None = None
    # Whose execution this is: the tenant of the API key that submitted it, DEFAULT_TENANT for operators.
    tenant: str = DEFAULT_TENANT
    # The W3C traceparent of the execution's span, when the submission was traced.
    traceparent: str | None = None
    # `request_digest` of the request that made it; None for a submission stored before digests were kept.
    request_digest: str | None = None
    cancel_requested_at: datetime | None = None  # see the column in schema.py


EXECUTION_ID_PREFIX = "exec_"


def new_execution_id() -> str:
    """`exec_` + a ULID: unique, and in creation order when sorted as text (across processes, to the millisecond)."""
    return f"{EXECUTION_ID_PREFIX}{ULID()}"


def execution_created_at(execution_id: str) -> float | None:
    """When an execution named by `new_execution_id` was created (epoch seconds); None for another id."""
    if not execution_id.startswith(EXECUTION_ID_PREFIX):
        return None
    try:
        return float(ULID.from_str(execution_id.removeprefix(EXECUTION_ID_PREFIX)).timestamp)
    except ValueError:
        return None


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # pysqlite's own transaction handling starts transactions late and never for DDL; turn it
    # off and begin every transaction ourselves (SQLAlchemy's documented SQLite recipe).
    dbapi_connection.isolation_level = None
    # WAL is a property of the file, so only the first connection ever switches it. The switch
    # needs an exclusive lock and SQLite reports "locked" at once, without waiting out the busy
    # timeout, when other connections are opening the file at the same moment: retry.
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone() != ("wal",):
                dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            contended = "locked" in str(exc) or "busy" in str(exc)
            if not contended or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + random.random() * 0.04)


def _sqlite_on_begin(connection: sa.Connection) -> None:
    # A writer takes the write lock when it begins (waiting up to the busy timeout), instead of
    # failing with "database is locked" when a read transaction tries to become a write.
    read_only = connection.get_execution_options().get(_READ_ONLY_OPTION)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _normalised_url(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(psycopg2_url(url.strip()))
    except sa.exc.ArgumentError:
        raise SubmissionStoreError(
            "the submission store needs a database URL such as postgresql://user@host:5432/db or "
            "sqlite:////abs/path/video_pipelines.db; the URL given cannot be parsed"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in {"postgresql", "sqlite"}:
        raise SubmissionStoreError(
            f"the submission store supports PostgreSQL and SQLite, not {backend!r} "
            f"({parsed.render_as_string(hide_password=True)})"
        )
    if backend == "sqlite" and parsed.database in {None, "", ":memory:"}:
        raise SubmissionStoreError(
            "the submission store needs a SQLite file that other processes can open "
            "(sqlite:////abs/path/video_pipelines.db), not an in-memory database"
        )
    return parsed


def _create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return ping_when_idle(sa.create_engine(url, connect_args={"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S}))


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise SubmissionStoreError(
            f"the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters, not blank; "
            f"got {len(key)} characters"
        )
    # An HTTP header cannot carry one; a NUL would also fail the key's query on PostgreSQL.
    if _CONTROL_CHARACTER.search(key):
        raise SubmissionStoreError("the idempotency key must not hold control characters such as NUL")
    return key


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _prepare(plan: Mapping[str, Any], options: SubmitOptions) -> tuple[dict[str, Any], str | None, str | None]:
    """The plan as stored (effective base, webhook URL and priority; never the secret), its webhook URL and secret."""
    if not isinstance(plan, Mapping):
        raise SubmissionStoreError(f"the plan must be a JSON object, got {type(plan).__name__}")
    try:
        # A deep copy that is surely JSON (both databases store it as JSON).
        copied: dict[str, Any] = json.loads(json.dumps(dict(plan), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SubmissionStoreError(f"the plan cannot be stored as JSON: {exc}") from None
    stored = options.apply(copied)
    webhook = stored.get("webhook")
    url = secret = None
    if isinstance(webhook, dict):
        url = _optional_text(webhook.get("url"))
        secret = _optional_text(webhook.pop("secret", None))
    # `apply` reads an empty secret as "not given"; asked for explicitly, it is a mistake.
    if options.webhook_secret == "":
        raise SubmissionStoreError("the webhook secret must not be empty; leave it out to send unsigned webhooks")
    if secret is not None and not url:
        raise SubmissionStoreError("a webhook secret needs a webhook URL (webhook_url or the plan's webhook.url)")
    # An empty priority asked for is refused, not read as "not given".
    asked = options.priority if options.priority is not None else stored.get("priority", Priority.NORMAL.value)
    if asked not in PRIORITIES:
        raise SubmissionStoreError(f"priority must be one of high, normal, low; got {asked!r}")
    stored["priority"] = asked
    return stored, url, secret


def request_digest(stored_plan: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the stored plan's canonical JSON (a retry that reorders keys is the same request);
    never of the secret, whose hash beside the plan would let a database reader guess a short one."""
    return hashlib.sha256(canonical_json(stored_plan).encode()).hexdigest()


def _row(submission: Submission, token: str | None) -> dict[str, Any]:
    row = {**vars(submission), "state": submission.state.value, "webhook_secret_token": token}
    del row["has_webhook_secret"]
    return row


def _submission(row: sa.RowMapping) -> Submission:
    has_secret = row["webhook_secret_token"] is not None
    return record(Submission, row, has_webhook_secret=has_secret, state=SubmissionState(row["state"]))


_PENDING = (SubmissionState.PENDING.value,)
_CLAIMED = (SubmissionState.LAUNCHING.value, SubmissionState.LAUNCHED.value)
_NOT_LAUNCHED = (SubmissionState.PENDING.value, SubmissionState.LAUNCHING.value)


_shared_stores: dict[tuple[str, ...], SubmissionStore] = {}
_shared_lock = threading.Lock()


def _forget_shared_after_fork() -> None:
    """A forked child (Celery's prefork pool) must not use, nor close, its parent's connections."""
    global _shared_lock
    _shared_lock = threading.Lock()  # another thread of the parent may have held it as it forked
    for store in _shared_stores.values():
        store.engine.dispose(close=False)
    _shared_stores.clear()


os.register_at_fork(after_in_child=_forget_shared_after_fork)


class SubmissionStore:
    """Submitted plans in PostgreSQL or SQLite, migrated when opened; thread-safe, and multi-process."""

    def __init__(self, url: str, *, secret_key: bytes | str | None = None) -> None:
        self._url = _normalised_url(url)
        # Read now, used when the first secret is encrypted or decrypted (a passphrase costs a scrypt).
        self._key_material = secret_key if secret_key is not None else os.environ.get(SECRET_KEY_ENV) or None
        self._key_file: Path | None = None
        if self._url.get_backend_name() == "sqlite":
            assert self._url.database is not None
            database = Path(self._url.database).expanduser().resolve()
            database.parent.mkdir(parents=True, exist_ok=True)
            self._key_file = database.parent / KEY_FILE_NAME
        self._secrets = SecretBox(self._resolve_key)
        # The engine, also for the tables beside: on SQLite each transaction takes the write lock at once. The
        # reader is the same engine for read-only work: on SQLite its transactions do not queue behind writers.
        self.engine = _create_engine(self._url)
        self.reader = self.engine.execution_options(**{_READ_ONLY_OPTION: True})
        self._rows = Rows(self.engine, self.reader)
        try:
            # Migrated already (every open but the first): a read, without the write lock migrating takes.
            with self.reader.connect() as connection:
                migrated = current_version(connection) == SCHEMA_VERSION
            if not migrated:
                migrate(self.engine)
        except BaseException as exc:
            self.engine.dispose()
            if not isinstance(exc, sa.exc.SQLAlchemyError):
                raise
            reason = getattr(exc, "orig", None) or exc
            raise SubmissionStoreError(f"cannot open the submission store at {self.url}: {reason}") from exc

    @classmethod
    def from_env(cls, dagster_home: Path | None = None) -> SubmissionStore:
        """The store of `$VIDEO_PIPELINES_DATABASE_URL`, else of SQLite in DAGSTER_HOME (with its key file)."""
        home = (dagster_home or Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME)).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        url = (os.environ.get(DATABASE_URL_ENV) or "").strip() or f"sqlite:///{home / DATABASE_FILE_NAME}"
        store = cls(url)
        store._key_file = home / KEY_FILE_NAME
        return store

    @classmethod
    def shared(cls) -> SubmissionStore:
        """This process's store of `from_env` (one per database, home and secret key), kept open: a store per
        sensor tick or run opened a connection pool and checked the schema each time, most of what a tick cost."""
        key = tuple(os.environ.get(name, "") for name in (DATABASE_URL_ENV, "DAGSTER_HOME", SECRET_KEY_ENV))
        with _shared_lock:
            store = _shared_stores.get(key)
            if store is None:
                store = _shared_stores[key] = cls.from_env()
            return store

    @property
    def url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"SubmissionStore({self.url!r})"

    def _resolve_key(self) -> bytes:
        if self._key_material is not None:
            return fernet_key(self._key_material)
        if self._key_file is not None:
            return load_or_create_key_file(self._key_file)
        raise SecretKeyError(
            f"no key to encrypt webhook secrets in the submission store at {self.url}: set {SECRET_KEY_ENV} to a "
            "Fernet key (python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            " or a long passphrase, the same for every process that submits or sends webhooks"
        )

    def submit(
        self,
        plan: Mapping[str, Any],
        options: SubmitOptions = NO_OPTIONS,
        *,
        tenant: str = DEFAULT_TENANT,
        traceparent: str | None = None,
    ) -> tuple[Submission, bool]:
        """Store `plan` as a new PENDING submission: (submission, True).

        A reused idempotency key of the same tenant returns (existing, False) for the same request
        (digest and secret), also when processes race; for another request, IdempotencyKeyReused.
        """
        key = _check_idempotency_key(options.idempotency_key)
        stored, url, secret = _prepare(plan, options)
        digest = request_digest(stored)
        if key is not None:
            existing = self._by_idempotency_key(tenant, key)
            if existing is not None:
                return self._same_request(existing, key, digest, secret), False
        token = self._secrets.encrypt(secret) if secret is not None else None
        now = datetime.now(UTC)
        submission = Submission(
            execution_id=new_execution_id(),
            plan=stored,
            base_execution_id=_optional_text(stored.get("baseExecutionId")),
            webhook_url=url,
            has_webhook_secret=token is not None,
            priority=stored["priority"],
            idempotency_key=key,
            created_at=now,
            updated_at=now,
            tenant=tenant,
            traceparent=traceparent,
            request_digest=digest,
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(submissions.insert().values(_row(submission, token)))
        except sa.exc.IntegrityError:
            # Another process inserted this idempotency key between our read and our insert.
            existing = self._by_idempotency_key(tenant, key) if key is not None else None
            if existing is None or key is None:
                raise
            return self._same_request(existing, key, digest, secret), False
        return submission, True

    def _same_request(self, existing: Submission, key: str, digest: str, secret: str | None) -> Submission:
        if existing.request_digest is None:
            return existing
        same = existing.request_digest == digest
        if same and (secret is not None or existing.has_webhook_secret):
            stored = self.webhook_secret(existing.execution_id)
            same = stored is not None and secret is not None and hmac.compare_digest(stored, secret)
        if not same:
            raise IdempotencyKeyReused(
                f"the idempotency key {key!r} was used before for another request (execution "
                f"{existing.execution_id}); a new request needs a new key"
            )
        return existing

    def _by_idempotency_key(self, tenant: str, key: str) -> Submission | None:
        query = sa.select(submissions).where(submissions.c.tenant == tenant, submissions.c.idempotency_key == key)
        return self._rows.first(query, _submission)

    def get(self, execution_id: str) -> Submission | None:
        return self._rows.first(sa.select(submissions).where(submissions.c.execution_id == execution_id), _submission)

    def newest(self, tenant: str | None, *, limit: int = 50, before: str | None = None) -> list[Submission]:
        """Up to `limit` submissions of `tenant` (None: all), newest first, older than id `before` (a cursor)."""
        query = sa.select(submissions).order_by(submissions.c.execution_id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(submissions.c.tenant == tenant)
        if before is not None:
            query = query.where(submissions.c.execution_id < before)
        return self._rows.all(query, _submission) if limit > 0 else []

    def count_by_state(self) -> dict[str, int]:
        query = sa.select(submissions.c.state, sa.func.count()).group_by(submissions.c.state)
        return {str(state): int(count) for state, count in self._rows.tuples(query)}

    def pending(self, limit: int = 100, *, except_tenants: Collection[str] = ()) -> list[Submission]:
        """Up to `limit` PENDING or LAUNCHING submissions, by priority, then taking turns between tenants (each
        tenant's oldest first): one tenant's burst of hundreds does not hold up another's one for ticks. Those of
        `except_tenants` only when LAUNCHING (asked for already)."""
        oldest = (submissions.c.created_at, submissions.c.execution_id)
        turn = sa.func.row_number().over(partition_by=(submissions.c.priority, submissions.c.tenant), order_by=oldest)
        due: sa.ColumnElement[bool] = submissions.c.state.in_(_NOT_LAUNCHED)
        if except_tenants:
            launching = submissions.c.state == SubmissionState.LAUNCHING.value
            due = due & (launching | submissions.c.tenant.not_in(list(except_tenants)))
        ranked = sa.select(submissions, turn.label("turn")).where(due).subquery()
        rank = sa.case({p.value: p.rank for p in Priority}, value=ranked.c.priority, else_=len(Priority))
        query = sa.select(*(ranked.c[column.name] for column in submissions.c)).order_by(
            rank, ranked.c.turn, ranked.c.created_at, ranked.c.execution_id
        )
        return self._rows.all(query.limit(limit), _submission) if limit > 0 else []

    def _move(self, execution_id: str, sources: tuple[str, ...], now: datetime, **values: Any) -> bool:
        where = submissions.c.execution_id == execution_id
        return self._rows.move(submissions, where, sources, updated_at=now, **values) == 1

    def claim(self, execution_id: str) -> bool:
        """PENDING -> LAUNCHING, before its run is asked for; False (and no change) if it was not pending."""
        return self._move(execution_id, _PENDING, datetime.now(UTC), state=SubmissionState.LAUNCHING.value)

    def mark_launched(self, execution_id: str, run_id: str) -> bool:
        """PENDING or LAUNCHING -> LAUNCHED with its Dagster run id; False (and no change) otherwise."""
        now = datetime.now(UTC)
        launched = {"state": SubmissionState.LAUNCHED.value, "run_id": run_id, "launched_at": now}
        return self._move(execution_id, _NOT_LAUNCHED, now, **launched)

    def mark_rejected(self, execution_id: str, error: str) -> bool:
        """PENDING -> REJECTED with the reason; False (and no change) if it was not pending."""
        return self._move(execution_id, _PENDING, datetime.now(UTC), state=SubmissionState.REJECTED.value, error=error)

    def cancel_pending(self, execution_id: str) -> bool:
        """PENDING -> CANCELED before any run was asked for; False (and no change) if it was not pending."""
        return self._move(execution_id, _PENDING, datetime.now(UTC), state=SubmissionState.CANCELED.value)

    def request_cancel(self, execution_id: str, *, launched: bool = True) -> bool:
        """Record a cancel of a LAUNCHING (with `launched`, also LAUNCHED) submission, kept at its first time."""
        now = datetime.now(UTC)
        states = _CLAIMED if launched else (SubmissionState.LAUNCHING.value,)
        requested = sa.func.coalesce(submissions.c.cancel_requested_at, now)
        return self._move(execution_id, states, now, cancel_requested_at=requested)

    def webhook_secret(self, execution_id: str) -> str | None:
        """The decrypted webhook secret of `execution_id`, or None; `SecretKeyError` under another key."""
        column = submissions.c.webhook_secret_token
        token = self._rows.value(sa.select(column).where(submissions.c.execution_id == execution_id))
        if token is None:
            return None
        return self._secrets.decrypt(token, what=f"the webhook secret of {execution_id}")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
