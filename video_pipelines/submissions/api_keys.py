"""API keys: `vp_` + 32 random bytes, stored as SHA-256 (a 256-bit random key needs no slow hash) with
its first 12 characters; `authenticate` writes last use at most once a minute."""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa
from ulid import ULID

from video_pipelines.errors import UsageError
from video_pipelines.submissions.rows import Rows, record
from video_pipelines.submissions.schema import DEFAULT_TENANT, api_keys
from video_pipelines.submissions.store import SubmissionStore
from video_pipelines.vocabulary import WireRecord

KEY_PREFIX: Final = "vp_"
KEY_ID_PREFIX: Final = "key_"
# How much of a key `api-keys list` shows, and what `api-keys revoke` accepts besides the key id.
SHOWN_PREFIX_LENGTH: Final = 12
MAX_NAME_LENGTH: Final = 200
_TENANT_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A key used more often than this has its `last_used_at` written once per interval.
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
# Longer than any key we make: what `authenticate` hashes is bounded before it is hashed.
_MAX_KEY_LENGTH: Final = 128


@dataclass(frozen=True)
class ApiKey(WireRecord):
    """One API key as stored: never the key itself, nor its hash."""

    key_id: str
    name: str
    tenant: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # An operator's key sees every tenant's executions, the deployment's workers and its queue; it submits as
    # DEFAULT_TENANT. Its `tenant` is that, kept so the row reads as any other.
    operator: bool = False


def check_tenant(tenant: object) -> str:
    """`tenant` when it is a valid tenant name; UsageError saying what one looks like otherwise."""
    if not isinstance(tenant, str) or _TENANT_PATTERN.fullmatch(tenant) is None:
        raise UsageError(
            f"tenant {tenant!r} is not a valid tenant name: use 1 to 64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or a digit (for example acme or team-7)"
        )
    return tenant


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"an API key needs a name of 1 to {MAX_NAME_LENGTH} characters, not blank; got {name!r}")
    return name.strip()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Every column but the hash: nothing read back for a caller ever carries it.
_COLUMNS = [column for column in api_keys.c if column.name != "key_hash"]


def _api_key(row: sa.RowMapping) -> ApiKey:
    return record(ApiKey, row)


class ApiKeys:
    def __init__(self, store: SubmissionStore) -> None:
        self._rows = Rows(store.engine, store.reader)

    def create(self, name: str, tenant: str = DEFAULT_TENANT, *, operator: bool = False) -> tuple[ApiKey, str]:
        """A new key for `tenant`, or an operator's (every tenant): (what is stored of it, the key). The key is not
        kept; show it now."""
        name = _check_name(name)
        tenant = check_tenant(tenant)
        if operator and tenant != DEFAULT_TENANT:
            raise UsageError(f"an operator's key sees every tenant: give --operator or --tenant {tenant}, not both")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        created = ApiKey(
            f"{KEY_ID_PREFIX}{ULID()}",
            name,
            tenant,
            key[:SHOWN_PREFIX_LENGTH],
            datetime.now(UTC),
            operator=operator,
        )
        with self._rows.engine.begin() as connection:
            connection.execute(api_keys.insert().values(**vars(created), key_hash=key_hash(key)))
        return created, key

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self._rows.all(sa.select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.key_id), _api_key)

    def get(self, key_id: str) -> ApiKey | None:
        return self._rows.first(sa.select(*_COLUMNS).where(api_keys.c.key_id == key_id), _api_key)

    def revoke(self, key_id_or_prefix: str) -> ApiKey:
        """Revoke a key named by its id, a prefix or the whole key (idempotent); UsageError if unknown or ambiguous."""
        found = self._find(key_id_or_prefix)
        live = sa.and_(api_keys.c.key_id == found.key_id, api_keys.c.revoked_at.is_(None))
        self._rows.changed(api_keys.update().where(live).values(revoked_at=datetime.now(UTC)))
        revoked = self.get(found.key_id)
        assert revoked is not None
        return revoked

    def _find(self, text: str) -> ApiKey:
        if text.startswith(KEY_ID_PREFIX):
            condition = api_keys.c.key_id == text
        elif text.startswith(KEY_PREFIX) and len(text) <= SHOWN_PREFIX_LENGTH:
            condition = api_keys.c.key_prefix.startswith(text, autoescape=True)
        elif text.startswith(KEY_PREFIX):
            # Longer than any stored prefix: the whole key, found as `authenticate` finds it.
            condition = api_keys.c.key_hash == key_hash(text)
        else:
            raise UsageError(
                f"{text!r} is neither an API key id (key_...) nor a key prefix (vp_...); "
                "see video-pipelines api-keys list"
            )
        found = self._rows.all(sa.select(*_COLUMNS).where(condition).limit(10), _api_key)
        if not found:
            raise UsageError(f"no API key {text!r}; see video-pipelines api-keys list")
        if len(found) > 1:
            ids = ", ".join(key.key_id for key in found)
            raise UsageError(f"the prefix {text!r} matches several API keys ({ids}); give the key id")
        return found[0]

    def authenticate(self, key: str) -> ApiKey | None:
        """The live key `key` is, or None for an unknown or revoked one. Records the use (see the module docstring)."""
        if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_LENGTH:
            return None
        found = self._rows.first(sa.select(*_COLUMNS).where(api_keys.c.key_hash == key_hash(key)), _api_key)
        if found is None or found.revoked_at is not None:
            return None
        now = datetime.now(UTC)
        if found.last_used_at is not None and now - found.last_used_at < LAST_USED_RESOLUTION:
            return found
        last_used = api_keys.c.last_used_at
        stale = sa.or_(last_used.is_(None), last_used < now - LAST_USED_RESOLUTION)
        statement = api_keys.update().where(api_keys.c.key_id == found.key_id, stale).values(last_used_at=now)
        written = self._rows.changed(statement)
        # Another process may have recorded this minute's use first: its time stands.
        return replace(found, last_used_at=now) if written else found
