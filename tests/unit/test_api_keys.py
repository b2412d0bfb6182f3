"""API keys (`submissions.api_keys`) on a real store: SQLite, then PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from video_pipelines.errors import UsageError
from video_pipelines.submissions import DEFAULT_TENANT, ApiKeys, SubmissionStore, check_tenant
from video_pipelines.submissions.api_keys import LAST_USED_RESOLUTION
from video_pipelines.submissions.schema import api_keys

from ..conftest import STORE_KEY
from .test_submissions_store import database_at


def test_a_created_key_authenticates_as_its_tenant(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    created, key = keys.create("ci runner", tenant="acme")
    assert key.startswith("vp_") and len(key) == 3 + 43  # token_urlsafe(32): 32 bytes in 43 characters
    assert created.key_id.startswith("key_") and created.key_prefix == key[:12]
    assert (created.name, created.tenant, created.revoked_at, created.last_used_at) == ("ci runner", "acme", None, None)

    found = keys.authenticate(key)
    assert found is not None
    assert (found.key_id, found.tenant) == (created.key_id, "acme")
    assert found.last_used_at is not None
    assert keys.get(created.key_id) == found  # what authenticate returns is what is stored


def test_the_default_tenant_and_distinct_keys(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    first, first_key = keys.create("one")
    second, second_key = keys.create("two")
    assert first.tenant == second.tenant == DEFAULT_TENANT
    assert first_key != second_key and first.key_id != second.key_id
    assert [key.key_id for key in keys.list()] == [first.key_id, second.key_id]


@pytest.mark.parametrize(
    "key",
    ["", "vp_", "vp_not-a-key-we-made-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "Bearer vp_x", "x" * 10_000, "vp_" + "a" * 500],
)
def test_unknown_keys_are_refused(store: SubmissionStore, key: str) -> None:
    keys = ApiKeys(store)
    keys.create("real")
    assert keys.authenticate(key) is None


def test_a_key_differing_in_one_character_is_refused(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    _, key = keys.create("real")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert keys.authenticate(tampered) is None
    assert keys.authenticate(key) is not None


def test_only_the_hash_is_stored(store: SubmissionStore) -> None:
    created, key = ApiKeys(store).create("secretive", tenant="acme")
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(api_keys)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    secret_part = key[12:]  # what the shown prefix does not reveal
    for column, value in row.items():
        assert key not in str(value), column
        assert secret_part not in str(value), column
    assert row["key_prefix"] == key[:12] and row["key_id"] == created.key_id


def test_the_key_is_nowhere_in_what_is_read_back(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    created, key = keys.create("listed")
    listed = keys.list()
    assert listed == [created]
    wire = listed[0].to_wire()
    assert set(wire) == {"keyId", "name", "tenant", "keyPrefix", "createdAt", "revokedAt", "lastUsedAt", "operator"}
    assert key not in repr(listed) and key not in str(wire)
    assert hashlib.sha256(key.encode()).hexdigest() not in repr(listed)


def test_a_revoked_key_is_refused_and_listed_as_revoked(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    created, key = keys.create("leaked", tenant="acme")
    kept, kept_key = keys.create("kept", tenant="acme")
    revoked = keys.revoke(created.key_id)
    assert revoked.key_id == created.key_id and revoked.revoked_at is not None
    assert keys.authenticate(key) is None
    assert keys.authenticate(kept_key) is not None
    by_id = {listed.key_id: listed for listed in keys.list()}
    assert by_id[created.key_id].revoked_at == revoked.revoked_at
    assert by_id[kept.key_id].revoked_at is None
    # Revoking again changes nothing: the first revocation's time stands.
    assert keys.revoke(created.key_id).revoked_at == revoked.revoked_at


def test_revoke_by_prefix_or_whole_key(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    by_prefix, prefix_key = keys.create("by prefix")
    by_key, whole_key = keys.create("by key")
    assert keys.revoke(by_prefix.key_prefix).key_id == by_prefix.key_id
    assert keys.revoke(whole_key).key_id == by_key.key_id
    assert keys.authenticate(prefix_key) is None and keys.authenticate(whole_key) is None


def test_an_ambiguous_prefix_names_the_keys_and_revokes_nothing(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    first, first_key = keys.create("one")
    second, second_key = keys.create("two")
    # "vp_" starts every key; a longer shared prefix is what a user could meet by chance.
    with pytest.raises(UsageError, match="matches several API keys") as raised:
        keys.revoke("vp_")
    assert first.key_id in str(raised.value) and second.key_id in str(raised.value)
    assert keys.authenticate(first_key) is not None and keys.authenticate(second_key) is not None


def test_a_prefix_with_like_wildcards_matches_only_literally(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    created, _ = keys.create("one")
    prefix = created.key_prefix
    # `_` and `%` are LIKE wildcards; in a prefix they are only themselves. Each pattern below
    # would match this key as a LIKE pattern, and matches nothing literally.
    position = next(index for index in range(3, len(prefix)) if prefix[index] != "_")
    underscore = prefix[:position] + "_" + prefix[position + 1 :]
    for pattern in ("vp_%", underscore):
        with pytest.raises(UsageError, match="no API key"):
            keys.revoke(pattern)
    assert keys.revoke(prefix).key_id == created.key_id


@pytest.mark.parametrize("name", ["key_01JUNKNOWN000000000000000", "vp_nosuchkey", "vp_" + "z" * 43])
def test_revoking_an_unknown_key_names_it(store: SubmissionStore, name: str) -> None:
    ApiKeys(store).create("one")
    with pytest.raises(UsageError, match=f"no API key '{name}'"):
        ApiKeys(store).revoke(name)


def test_revoke_needs_a_key_id_or_prefix(store: SubmissionStore) -> None:
    with pytest.raises(UsageError, match="neither an API key id"):
        ApiKeys(store).revoke("acme")


@pytest.mark.parametrize(
    "tenant", ["", "Acme", "-acme", "_acme", "acme corp", "acme/1", "a" * 65, "ächtung", "acme\n", "acme.io"]
)
def test_bad_tenant_names_are_refused_and_nothing_is_stored(store: SubmissionStore, tenant: str) -> None:
    keys = ApiKeys(store)
    with pytest.raises(UsageError, match="is not a valid tenant name: use 1 to 64 lowercase letters"):
        keys.create("key", tenant=tenant)
    assert keys.list() == []


@pytest.mark.parametrize("tenant", ["a", "acme", "team-7", "9lives", "a_b", "a" * 64])
def test_good_tenant_names(tenant: str) -> None:
    assert check_tenant(tenant) == tenant


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_key_needs_a_name(store: SubmissionStore, name: str) -> None:
    with pytest.raises(UsageError, match="needs a name"):
        ApiKeys(store).create(name)


def test_last_used_is_written_at_most_once_a_minute(store: SubmissionStore) -> None:
    keys = ApiKeys(store)
    created, key = keys.create("busy")
    first = keys.authenticate(key)
    assert first is not None and first.last_used_at is not None
    again = keys.authenticate(key)
    assert again is not None and again.last_used_at == first.last_used_at  # within the minute: no write
    assert keys.get(created.key_id) == first

    # A minute later (the stored time moved back), the next use is recorded.
    earlier = datetime.now(UTC) - LAST_USED_RESOLUTION - timedelta(seconds=1)
    with store.engine.begin() as connection:
        connection.execute(api_keys.update().values(last_used_at=earlier))
    later = keys.authenticate(key)
    assert later is not None and later.last_used_at is not None and later.last_used_at > first.last_used_at
    stored = keys.get(created.key_id)
    assert stored is not None and stored.last_used_at == later.last_used_at


def test_keys_are_shared_by_every_store_on_the_database(db_url: str, store: SubmissionStore) -> None:
    created, key = ApiKeys(store).create("shared", tenant="acme")
    with SubmissionStore(db_url) as other:
        found = ApiKeys(other).authenticate(key)
        assert found is not None and found.key_id == created.key_id
        ApiKeys(other).revoke(created.key_id)
    assert ApiKeys(store).authenticate(key) is None


# --- the CLI


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from video_pipelines.doors import cli

    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_creates_lists_and_revokes_keys(dagster_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "api-keys", "create", "--name", "ci", "--tenant", "acme")
    assert code == 0, err
    created = json.loads(out)
    assert set(created) == {"keyId", "name", "tenant", "operator", "key"}
    assert (created["name"], created["tenant"]) == ("ci", "acme")
    assert "shown only now" in err and created["key"] not in err
    code, out, _ = run_cli(capsys, "api-keys", "create", "--name", "ops")
    assert code == 0 and json.loads(out)["tenant"] == DEFAULT_TENANT

    # The key works against the deployment's store, which keeps only its hash.
    with SubmissionStore.from_env(dagster_home) as store:
        found = ApiKeys(store).authenticate(created["key"])
        assert found is not None and found.key_id == created["keyId"] and found.tenant == "acme"
        with store.engine.connect() as connection:
            assert created["key"] not in str(connection.execute(sa.select(api_keys)).all())

    code, out, _ = run_cli(capsys, "api-keys", "list")
    assert code == 0
    listed = json.loads(out)
    assert [entry["name"] for entry in listed] == ["ci", "ops"]
    assert set(listed[0]) == {
        "keyId",
        "name",
        "tenant",
        "keyPrefix",
        "createdAt",
        "revokedAt",
        "lastUsedAt",
        "operator",
    }
    assert listed[0]["keyPrefix"] == created["key"][:12] and listed[0]["lastUsedAt"] is not None
    assert listed[0]["revokedAt"] is None and created["key"] not in out

    code, out, _ = run_cli(capsys, "api-keys", "revoke", listed[0]["keyPrefix"])
    assert code == 0 and json.loads(out)["keyId"] == created["keyId"] and json.loads(out)["revokedAt"]
    with SubmissionStore.from_env(dagster_home) as store:
        assert ApiKeys(store).authenticate(created["key"]) is None
    _, out, _ = run_cli(capsys, "api-keys", "list")
    assert [entry["revokedAt"] is not None for entry in json.loads(out)] == [True, False]


def test_an_operator_key_is_made_only_with_operator_and_never_for_a_tenant(
    dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "api-keys", "create", "--name", "ops", "--operator")
    assert code == 0, err
    created = json.loads(out)
    assert (created["operator"], created["tenant"]) == (True, DEFAULT_TENANT)
    code, out, _ = run_cli(capsys, "api-keys", "create", "--name", "plain")
    assert code == 0 and json.loads(out)["operator"] is False  # a key of the default tenant is no operator's
    with SubmissionStore.from_env(dagster_home) as store:
        found = ApiKeys(store).authenticate(created["key"])
        assert found is not None and found.operator
    code, _, err = run_cli(capsys, "api-keys", "create", "--name", "both", "--operator", "--tenant", "acme")
    assert code == 2 and "--operator or --tenant acme, not both" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "--name", "x", "--tenant", "Acme Corp"), "error: tenant 'Acme Corp' is not a valid tenant name"),
        (("create", "--name", "x", "--tenant", ""), "error: tenant '' is not a valid tenant name"),
        (("revoke", "key_01JNOSUCHKEY0000000000000"), "error: no API key 'key_01JNOSUCHKEY0000000000000'"),
    ],
)
def test_the_cli_refuses_with_exit_2_and_a_message(
    dagster_home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run_cli(capsys, "api-keys", *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and "Traceback" not in err
    _, out, _ = run_cli(capsys, "api-keys", "list")
    assert json.loads(out) == []


def test_migration_11_leaves_every_existing_key_a_tenants(db_url: str) -> None:
    """Keys made before operator keys existed (the default tenant's too) do not become operators' by migrating."""
    at = "'2026-01-01 00:00:00+00'"
    key = "vp_" + "k" * 43
    database_at(
        db_url,
        9,
        "INSERT INTO video_pipelines_api_keys (key_id, name, tenant, key_hash, key_prefix, created_at) "
        f"VALUES ('key_old', 'old', '{DEFAULT_TENANT}', '{hashlib.sha256(key.encode()).hexdigest()}', "
        f"'{key[:12]}', {at})",
    )
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        found = ApiKeys(opened).authenticate(key)
        assert found is not None and (found.key_id, found.tenant, found.operator) == ("key_old", DEFAULT_TENANT, False)
        _, made = ApiKeys(opened).create("ops", operator=True)
        made_key = ApiKeys(opened).authenticate(made)
        assert made_key is not None and made_key.operator
