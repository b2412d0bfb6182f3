"""The submission store on real databases: a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from video_pipelines.errors import IdempotencyKeyReused, SecretKeyError, SubmissionStoreError
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import (
    DEFAULT_TENANT,
    KEY_FILE_NAME,
    SCHEMA_VERSION,
    SECRET_KEY_ENV,
    AttemptReason,
    AttemptState,
    AttemptStore,
    RunAttempt,
    Submission,
    SubmissionState,
    SubmissionStore,
    new_execution_id,
)
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.submissions.schema import VERSIONS

from ..conftest import STORE_KEY

SECRET = "s3cr3t-webhook-value-7f1c"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")


def plan(prompt: str = "Scene 1", **extra: Any) -> dict[str, Any]:
    return {"jobs": [{"id": "job1", "type": "generateVideo", "params": {"prompt": prompt, "duration": 1}}], **extra}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (SECRET_KEY_ENV, "VIDEO_PIPELINES_DATABASE_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)


def raw_rows(url: str, query: str) -> list[dict[str, Any]]:
    """Rows read around the store, straight from the database."""
    engine = sa.create_engine(psycopg2_url(url))
    try:
        with engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(query)).mappings()]
    finally:
        engine.dispose()


def in_parallel(count: int, work: Callable[[int], T]) -> list[T]:
    """`work(i)` for i in range(count), in threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def database_at(db_url: str, version: int, *statements: str) -> None:
    """A new database at schema `version` (its migrations as they were released), then `statements` run in it."""
    from video_pipelines.submissions import schema

    url = sa.make_url(psycopg2_url(db_url))
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            schema.schema_version.create(connection)
            for step in schema.MIGRATIONS[:version]:
                step.apply(connection)
                connection.execute(
                    schema.schema_version.insert().values(
                        version=step.version, description=step.description, applied_at=datetime.now(UTC)
                    )
                )
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def keys_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_in(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_in(item)}
    return set()


# --- submit and read back -------------------------------------------------------------


def test_submit_and_get_round_trip(store: SubmissionStore) -> None:
    submitted, created = store.submit(
        plan(webhook={"url": "https://hooks.example.com/a", "secret": SECRET}),
        SubmitOptions(base_execution_id="exec_base", priority="high", idempotency_key="order-1"),
    )

    assert created
    assert submitted.state is SubmissionState.PENDING
    assert submitted.execution_id.startswith("exec_")
    assert submitted.base_execution_id == "exec_base"
    assert submitted.webhook_url == "https://hooks.example.com/a"
    assert submitted.has_webhook_secret
    assert submitted.priority == "high"
    assert submitted.idempotency_key == "order-1"
    assert submitted.error is None and submitted.run_id is None and submitted.launched_at is None
    assert submitted.created_at.tzinfo is UTC
    assert submitted.updated_at == submitted.created_at
    assert submitted.plan == {
        "jobs": plan()["jobs"],
        "webhook": {"url": "https://hooks.example.com/a"},
        "baseExecutionId": "exec_base",
        "priority": "high",
    }

    fetched = store.get(submitted.execution_id)
    assert fetched == submitted
    assert fetched is not None and fetched.created_at.tzinfo is UTC and fetched.updated_at.tzinfo is UTC
    assert store.webhook_secret(submitted.execution_id) == SECRET
    assert SECRET not in repr(fetched) and SECRET not in repr(submitted)
    assert store.get("exec_unknown") is None
    assert store.webhook_secret("exec_unknown") is None


def test_arguments_win_over_the_plan_and_fill_what_it_lacks(store: SubmissionStore) -> None:
    given = plan(
        baseExecutionId="exec_from_plan",
        priority="low",
        webhook={"url": "https://plan.example.com/hook", "secret": "plan-secret"},
    )
    submitted, _ = store.submit(
        given,
        SubmitOptions(
            base_execution_id="exec_from_flag",
            webhook_url="https://flag.example.com/hook",
            webhook_secret=SECRET,
            priority="high",
        ),
    )
    assert submitted.base_execution_id == "exec_from_flag"
    assert submitted.webhook_url == "https://flag.example.com/hook"
    assert submitted.priority == "high"
    assert submitted.plan["baseExecutionId"] == "exec_from_flag"
    assert submitted.plan["webhook"] == {"url": "https://flag.example.com/hook"}
    assert submitted.plan["priority"] == "high"
    assert store.webhook_secret(submitted.execution_id) == SECRET
    assert given["webhook"]["secret"] == "plan-secret", "the caller's plan is not modified"

    from_plan, _ = store.submit(given)
    assert (from_plan.base_execution_id, from_plan.webhook_url, from_plan.priority) == (
        "exec_from_plan",
        "https://plan.example.com/hook",
        "low",
    )
    assert store.webhook_secret(from_plan.execution_id) == "plan-secret"

    plain, _ = store.submit(plan())
    assert (plain.base_execution_id, plain.webhook_url, plain.has_webhook_secret, plain.priority) == (
        None,
        None,
        False,
        "normal",
    )
    assert store.webhook_secret(plain.execution_id) is None


def test_submit_options_apply_is_the_merge_every_door_uses() -> None:
    given = plan(
        priority="low", baseExecutionId="exec_plan", webhook={"url": "https://plan.example.com", "secretEnv": "HOOK"}
    )
    assert SubmitOptions().apply(given) == given
    assert SubmitOptions(base_execution_id="", webhook_url="", webhook_secret="", priority="").apply(given) == given

    merged = SubmitOptions(base_execution_id="exec_flag", webhook_secret=SECRET, priority="high").apply(given)
    assert merged == plan(
        priority="high", baseExecutionId="exec_flag", webhook={"url": "https://plan.example.com", "secret": SECRET}
    )
    assert given["webhook"] == {"url": "https://plan.example.com", "secretEnv": "HOOK"}, "the plan is not modified"

    for own in ({}, {"webhook": None}, {"webhook": "not an object"}):
        assert SubmitOptions(webhook_url="https://flag.example.com").apply(plan(**own))["webhook"] == {
            "url": "https://flag.example.com"
        }


def test_a_secret_argument_replaces_the_plans_secret_env(store: SubmissionStore) -> None:
    submitted, _ = store.submit(
        plan(webhook={"url": "https://plan.example.com", "secretEnv": "HOOK"}), SubmitOptions(webhook_secret=SECRET)
    )
    assert submitted.plan["webhook"] == {"url": "https://plan.example.com"}
    assert store.webhook_secret(submitted.execution_id) == SECRET


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priority": "urgent"}, "priority must be one of high, normal, low"),
        ({"webhook_secret": SECRET}, "needs a webhook URL"),
        ({"webhook_url": "https://e.example.com", "webhook_secret": ""}, "must not be empty"),
        ({"idempotency_key": "  "}, "idempotency key"),
        ({"idempotency_key": "k" * 256}, "idempotency key"),
        ({"idempotency_key": "order\x00-1"}, "control characters such as NUL"),
    ],
)
def test_refused_inputs_store_nothing(store: SubmissionStore, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SubmissionStoreError, match=message):
        store.submit(plan(), SubmitOptions(**kwargs))
    assert store.pending() == []


def test_a_plan_that_is_not_json_is_refused(store: SubmissionStore) -> None:
    with pytest.raises(SubmissionStoreError, match="cannot be stored as JSON"):
        store.submit(plan(tags={1, 2}))
    with pytest.raises(SubmissionStoreError, match="cannot be stored as JSON"):
        store.submit(plan(ratio=float("nan")))
    assert store.pending() == []


# --- execution ids --------------------------------------------------------------------


def test_execution_ids_are_unique_and_sort_in_creation_order() -> None:
    ids = [new_execution_id() for _ in range(5000)]
    assert all(re.fullmatch(r"exec_[0-9A-HJKMNP-TV-Z]{26}", value) for value in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_submissions_sort_by_creation(store: SubmissionStore) -> None:
    submitted = [store.submit(plan(f"Scene {n}"))[0] for n in range(20)]
    ids = [item.execution_id for item in submitted]
    assert ids == sorted(ids)
    assert [item.created_at for item in submitted] == sorted(item.created_at for item in submitted)


# --- idempotency ----------------------------------------------------------------------


def test_idempotency_key_returns_the_existing_submission_for_the_same_request(store: SubmissionStore) -> None:
    first, created = store.submit(
        plan("Scene 1"), SubmitOptions(idempotency_key="order-42", priority="low", webhook_url="https://e.example.com")
    )
    # The same plan with its keys in another order (JSON objects have none) is the same request.
    reordered = json.loads(json.dumps(plan("Scene 1"), sort_keys=True))
    reordered["jobs"][0] = dict(reversed(list(reordered["jobs"][0].items())))
    again, created_again = store.submit(
        reordered, SubmitOptions(idempotency_key="order-42", priority="low", webhook_url="https://e.example.com")
    )
    assert created and not created_again
    assert again == first and first.request_digest is not None and len(first.request_digest) == 64
    assert store.get(first.execution_id) == first
    other, created_other = store.submit(plan("Scene 1"), SubmitOptions(idempotency_key="order-43"))
    assert created_other and other.execution_id != first.execution_id
    assert len(store.pending()) == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"plan": plan("Something else entirely")},
        {"priority": "high"},
        {"webhook_url": "https://elsewhere.example.com"},
        {"webhook_secret": SECRET},
        {"base_execution_id": "exec_base"},
    ],
)
def test_idempotency_key_used_again_for_another_request_is_refused(
    store: SubmissionStore, changes: dict[str, Any]
) -> None:
    """The IETF idempotency-key draft: a key reused with another payload is an error, never the first answer."""
    request: dict[str, Any] = {"plan": plan("Scene 1"), "priority": "low", "webhook_url": "https://e.example.com"}

    def submit(changed: dict[str, Any], tenant: str = DEFAULT_TENANT) -> tuple[Submission, bool]:
        given = {**request, **changed, "idempotency_key": "order-42"}
        return store.submit(given.pop("plan"), SubmitOptions(**given), tenant=tenant)

    first, _ = submit({})
    with pytest.raises(IdempotencyKeyReused, match=f"idempotency key 'order-42'.*{first.execution_id}"):
        submit(changes)
    assert [submission.execution_id for submission in store.newest(None)] == [first.execution_id]
    # Keys are per tenant: another tenant's order-42 is another submission, whatever it holds.
    assert submit(changes, tenant="globex")[1]


def test_idempotency_key_compares_the_webhook_secret_too(store: SubmissionStore) -> None:
    first, _ = store.submit(
        plan(), SubmitOptions(idempotency_key="signed", webhook_url="https://e.example.com", webhook_secret=SECRET)
    )
    again, created = store.submit(
        plan(), SubmitOptions(idempotency_key="signed", webhook_url="https://e.example.com", webhook_secret=SECRET)
    )
    assert again == first and not created
    for other_secret in ("another-secret-value", None):
        with pytest.raises(IdempotencyKeyReused):
            store.submit(
                plan(),
                SubmitOptions(
                    idempotency_key="signed", webhook_url="https://e.example.com", webhook_secret=other_secret
                ),
            )


def test_idempotency_key_is_kept_after_the_submission_left_pending(store: SubmissionStore) -> None:
    first, _ = store.submit(plan(), SubmitOptions(idempotency_key="once"))
    assert store.mark_launched(first.execution_id, "run-1")
    again, created = store.submit(plan(), SubmitOptions(idempotency_key="once"))
    assert not created
    assert again.execution_id == first.execution_id and again.state is SubmissionState.LAUNCHED


def test_racing_submits_with_one_key_make_one_submission(db_url: str) -> None:
    # Four stores are four engines: to the database, four clients.
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    try:
        results = in_parallel(
            16,
            lambda i: stores[i % 4].submit(
                plan("one request"), SubmitOptions(idempotency_key="same-key", priority="high")
            ),
        )
    finally:
        for opened in stores:
            opened.close()

    assert sum(created for _, created in results) == 1
    assert len({submission.execution_id for submission, _ in results}) == 1
    assert raw_rows(db_url, "SELECT execution_id FROM video_pipelines_submissions") == [
        {"execution_id": results[0][0].execution_id}
    ]


# --- pending and state changes --------------------------------------------------------


def test_pending_takes_turns_between_tenants_so_a_burst_does_not_hold_up_another(store: SubmissionStore) -> None:
    burst = [store.submit(plan(f"a {n}"), tenant="acme")[0].execution_id for n in range(5)]
    [other] = [store.submit(plan("b"), tenant="bolt")[0].execution_id]
    [urgent] = [store.submit(plan("a urgent"), SubmitOptions(priority="high"), tenant="acme")[0].execution_id]
    assert [item.execution_id for item in store.pending(limit=3)] == [urgent, burst[0], other]
    assert [item.execution_id for item in store.pending()] == [urgent, burst[0], other, *burst[1:]]


def test_pending_lists_highest_priority_first_then_oldest(store: SubmissionStore) -> None:
    order = ["low", "normal", "high", "normal", "high", "low"]
    made = [
        store.submit(plan(f"{priority} {n}"), SubmitOptions(priority=priority))[0] for n, priority in enumerate(order)
    ]
    launched, _ = store.submit(plan("already launched"), SubmitOptions(priority="high"))
    assert store.mark_launched(launched.execution_id, "run-x")

    pending = store.pending()
    assert [item.execution_id for item in pending] == [
        made[2].execution_id,
        made[4].execution_id,
        made[1].execution_id,
        made[3].execution_id,
        made[0].execution_id,
        made[5].execution_id,
    ]
    assert all(item.state is SubmissionState.PENDING for item in pending)
    assert [item.execution_id for item in store.pending(limit=2)] == [made[2].execution_id, made[4].execution_id]
    assert store.pending(limit=0) == []


def test_state_changes_move_only_pending_submissions(store: SubmissionStore) -> None:
    launched, _ = store.submit(plan("a"))
    rejected, _ = store.submit(plan("b"))
    canceled, _ = store.submit(plan("c"))

    assert store.mark_launched(launched.execution_id, "run-a")
    assert store.mark_rejected(rejected.execution_id, "base exec_x failed")
    assert store.cancel_pending(canceled.execution_id)

    after_launch = store.get(launched.execution_id)
    assert after_launch is not None
    assert after_launch.state is SubmissionState.LAUNCHED
    assert after_launch.run_id == "run-a"
    assert after_launch.launched_at is not None and after_launch.launched_at == after_launch.updated_at
    assert after_launch.updated_at >= after_launch.created_at
    after_reject = store.get(rejected.execution_id)
    assert after_reject is not None
    assert (after_reject.state, after_reject.error, after_reject.run_id) == (
        SubmissionState.REJECTED,
        "base exec_x failed",
        None,
    )
    after_cancel = store.get(canceled.execution_id)
    assert after_cancel is not None and after_cancel.state is SubmissionState.CANCELED

    for done in (after_launch, after_reject, after_cancel):
        assert not store.mark_launched(done.execution_id, "run-late")
        assert not store.mark_rejected(done.execution_id, "late")
        assert not store.cancel_pending(done.execution_id)
        assert store.get(done.execution_id) == done
    assert not store.mark_launched("exec_unknown", "run")
    assert not store.cancel_pending("exec_unknown")
    assert store.pending() == []


def test_racing_launches_have_one_winner(db_url: str) -> None:
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    try:
        target, _ = stores[0].submit(plan())
        wins = in_parallel(12, lambda i: stores[i % 4].mark_launched(target.execution_id, f"run-{i}"))
        contested, _ = stores[0].submit(plan("contested"))
        outcomes = in_parallel(
            8,
            lambda i: (
                stores[i % 4].cancel_pending(contested.execution_id)
                if i % 2
                else stores[i % 4].mark_launched(contested.execution_id, f"run-{i}")
            ),
        )
        launched = stores[0].get(target.execution_id)
        final = stores[0].get(contested.execution_id)
    finally:
        for opened in stores:
            opened.close()

    assert wins.count(True) == 1
    assert launched is not None and launched.run_id == f"run-{wins.index(True)}"
    assert outcomes.count(True) == 1
    winner = outcomes.index(True)
    assert final is not None
    assert final.state is (SubmissionState.CANCELED if winner % 2 else SubmissionState.LAUNCHED)


def test_a_claimed_submission_is_canceled_by_request_only(store: SubmissionStore) -> None:
    claimed, _ = store.submit(plan("a"))
    assert store.claim(claimed.execution_id) and not store.claim(claimed.execution_id)
    # Its run is asked for: a cancel no longer moves it, it is recorded for the run to obey.
    assert not store.cancel_pending(claimed.execution_id) and not store.mark_rejected(claimed.execution_id, "late")
    assert store.request_cancel(claimed.execution_id)
    requested = store.get(claimed.execution_id)
    assert requested is not None and requested.state is SubmissionState.LAUNCHING
    assert requested.cancel_requested_at is not None and requested.cancel_requested_at.tzinfo is UTC
    assert store.pending() == [requested]  # until its run exists, the sensor asks for it again
    assert store.request_cancel(claimed.execution_id)  # asked twice: the first request's time stays
    assert store.get(claimed.execution_id).cancel_requested_at == requested.cancel_requested_at  # type: ignore[union-attr]
    assert store.mark_launched(claimed.execution_id, "run-a") and store.pending() == []
    launched = store.get(claimed.execution_id)
    assert launched is not None and launched.state is SubmissionState.LAUNCHED
    assert launched.cancel_requested_at == requested.cancel_requested_at

    pending, _ = store.submit(plan("b"))
    assert not store.request_cancel(pending.execution_id)  # pending: a cancel moves it (cancel_pending)
    assert store.cancel_pending(pending.execution_id)
    assert not store.claim(pending.execution_id) and not store.request_cancel(pending.execution_id)
    assert store.get(pending.execution_id).cancel_requested_at is None  # type: ignore[union-attr]
    assert not store.request_cancel("exec_unknown")


def test_a_claim_racing_a_cancel_has_one_winner(db_url: str) -> None:
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    try:
        contested = [stores[0].submit(plan(f"contested-{n}"))[0].execution_id for n in range(4)]
        outcomes = {
            execution_id: in_parallel(
                8,
                lambda i, execution_id=execution_id: (
                    stores[i % 4].cancel_pending(execution_id) if i % 2 else stores[i % 4].claim(execution_id)
                ),
            )
            for execution_id in contested
        }
        finals = {execution_id: stores[0].get(execution_id) for execution_id in contested}
    finally:
        for opened in stores:
            opened.close()
    for execution_id, wins in outcomes.items():
        assert wins.count(True) == 1
        final = finals[execution_id]
        assert final is not None
        assert final.state is (SubmissionState.CANCELED if wins.index(True) % 2 else SubmissionState.LAUNCHING)


# --- webhook secrets ------------------------------------------------------------------


def test_the_secret_is_encrypted_at_rest(db_url: str) -> None:
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        submitted, _ = opened.submit(plan(webhook={"url": "https://hooks.example.com/x", "secret": SECRET}))
        opened.submit(plan("second"), SubmitOptions(webhook_url="https://hooks.example.com/y", webhook_secret=SECRET))

    rows = raw_rows(db_url, "SELECT * FROM video_pipelines_submissions")
    assert len(rows) == 2
    for row in rows:
        for column, value in row.items():
            assert SECRET not in str(value), f"the plaintext secret is in column {column}"
        stored_plan = row["plan"] if isinstance(row["plan"], dict) else json.loads(row["plan"])
        assert "secret" not in keys_in(stored_plan)
        assert Fernet(STORE_KEY).decrypt(row["webhook_secret_token"].encode()).decode() == SECRET
    assert submitted.execution_id in {row["execution_id"] for row in rows}

    if db_url.startswith("sqlite"):
        database = Path(db_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(f"{database.name}*"):
            assert SECRET.encode() not in path.read_bytes(), f"the plaintext secret is in {path.name}"


def test_a_wrong_key_is_a_clear_error(db_url: str) -> None:
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        submitted, _ = opened.submit(plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET))
    with SubmissionStore(db_url, secret_key=Fernet.generate_key()) as other:
        assert other.get(submitted.execution_id) == submitted, "everything but the secret reads without the key"
        with pytest.raises(SecretKeyError, match=rf"{submitted.execution_id}.*{SECRET_KEY_ENV}") as caught:
            other.webhook_secret(submitted.execution_id)
    assert SECRET not in str(caught.value)
    assert isinstance(caught.value, SubmissionStoreError)


def test_passphrase_and_key_forms(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    passphrase = "correct horse battery staple, and then some"
    with SubmissionStore(db_url, secret_key=passphrase) as opened:
        with_passphrase, _ = opened.submit(
            plan("a"), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET)
        )
    monkeypatch.setenv(SECRET_KEY_ENV, passphrase + "\n")
    with SubmissionStore(db_url) as from_env_key:
        assert from_env_key.webhook_secret(with_passphrase.execution_id) == SECRET

    with SubmissionStore(db_url, secret_key=STORE_KEY) as as_bytes:
        with_key, _ = as_bytes.submit(
            plan("b"), SubmitOptions(webhook_url="https://e.example.com", webhook_secret="other")
        )
    with SubmissionStore(db_url, secret_key=STORE_KEY.decode()) as as_text:
        assert as_text.webhook_secret(with_key.execution_id) == "other"
        with pytest.raises(SecretKeyError):
            as_text.webhook_secret(with_passphrase.execution_id)


def test_sqlite_without_a_key_uses_a_private_key_file_next_to_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'submissions.db'}"
    key_file = tmp_path / "data" / KEY_FILE_NAME
    with SubmissionStore(url) as opened:
        plain, _ = opened.submit(plan("no secret"))
        assert not key_file.exists(), "no key is made before a secret needs one"
        submitted, _ = opened.submit(plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert SECRET.encode() not in key_file.read_bytes()
    with SubmissionStore(url) as reopened:
        assert reopened.webhook_secret(submitted.execution_id) == SECRET
        assert reopened.get(plain.execution_id) == plain


def test_the_key_file_is_created_once_when_processes_race(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'submissions.db'}"
    stores = [SubmissionStore(url) for _ in range(8)]
    try:
        made = in_parallel(
            8,
            lambda i: stores[i].submit(
                plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=f"s{i}")
            )[0],
        )
        assert [stores[(i + 1) % 8].webhook_secret(item.execution_id) for i, item in enumerate(made)] == [
            f"s{i}" for i in range(8)
        ]
    finally:
        for opened in stores:
            opened.close()
    assert [path.name for path in tmp_path.iterdir() if "key" in path.name] == [KEY_FILE_NAME]


# --- configuration from the environment -----------------------------------------------


def test_from_env_uses_sqlite_in_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with SubmissionStore.from_env() as opened:
        assert opened.url == f"sqlite:///{home / 'video_pipelines.db'}"
        submitted, _ = opened.submit(plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET))
    assert (home / "video_pipelines.db").is_file()
    assert stat.S_IMODE((home / KEY_FILE_NAME).stat().st_mode) == 0o600
    with SubmissionStore.from_env(dagster_home=home) as reopened:
        assert reopened.webhook_secret(submitted.execution_id) == SECRET

    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    with SubmissionStore.from_env() as default:
        assert default.url == f"sqlite:///{tmp_path / '.dagster_home' / 'video_pipelines.db'}"


# --- schema and migrations ------------------------------------------------------------


def test_migrations_are_idempotent_and_recorded(db_url: str) -> None:
    SubmissionStore(db_url, secret_key=STORE_KEY).close()
    with SubmissionStore(db_url, secret_key=STORE_KEY) as reopened:
        reopened.submit(plan())
    versions = raw_rows(db_url, "SELECT version, description FROM video_pipelines_schema_version ORDER BY version")
    assert [row["version"] for row in versions] == list(VERSIONS)

    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        tables = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert sorted(tables) == [
        "video_pipelines_api_keys",
        "video_pipelines_attempts",
        "video_pipelines_counters",
        "video_pipelines_execution_outcomes",
        "video_pipelines_node_claims",
        "video_pipelines_node_results",
        "video_pipelines_provider_circuits",
        "video_pipelines_provider_waits",
        "video_pipelines_schema_version",
        "video_pipelines_submissions",
        "video_pipelines_video_fetches",
        "video_pipelines_webhook_attempts",
        "video_pipelines_webhook_deliveries",
        "video_pipelines_workers",
    ]


def test_migration_3_keeps_rows_and_scopes_idempotency_keys_per_tenant(db_url: str) -> None:
    """A database at schema 2 with a submission, a delivery and its attempt keeps all three through step 3."""
    at = "'2026-01-01 00:00:00+00'"
    database_at(
        db_url,
        2,
        "INSERT INTO video_pipelines_submissions (execution_id, plan, priority, state, created_at, "
        f"updated_at, idempotency_key) VALUES ('exec_old', '{{}}', 'normal', 'pending', {at}, {at}, 'k1')",
        "INSERT INTO video_pipelines_webhook_deliveries (webhook_id, execution_id, event, url, body, state, "
        f"attempts, next_attempt_at, created_at) VALUES ('msg_exec_old_completed', 'exec_old', 'completed', "
        f"'http://receiver', '{{}}', 'delivered', 1, {at}, {at})",
        "INSERT INTO video_pipelines_webhook_attempts (webhook_id, number, started_at, finished_at, "
        f"status_code, duration_ms) VALUES ('msg_exec_old_completed', 1, {at}, {at}, 200, 5)",
    )

    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        old = opened.get("exec_old")
        assert old is not None and old.tenant == "default" and old.idempotency_key == "k1"
        again, created = opened.submit(plan(), SubmitOptions(idempotency_key="k1"))
        assert not created and again.execution_id == "exec_old"
        other, created = opened.submit(plan(), SubmitOptions(idempotency_key="k1"), tenant="acme")
        assert created and other.tenant == "acme" and other.execution_id != "exec_old"
        from video_pipelines.webhooks import DeliveryOutbox

        outbox = DeliveryOutbox(opened)
        assert [delivery.webhook_id for delivery in outbox.deliveries("exec_old")] == ["msg_exec_old_completed"]
        assert [attempt.status_code for attempt in outbox.attempts("msg_exec_old_completed")] == [200]


def test_migration_4_keeps_deliveries_as_attempt_1_and_makes_them_unique_per_attempt(db_url: str) -> None:
    """A database at schema 3 keeps its submission, deliveries and their attempts through step 4, as attempt 1."""
    at = "'2026-01-01 00:00:00+00'"
    columns = "webhook_id, execution_id, event, node_id, url, body, state, attempts, next_attempt_at, created_at"
    database_at(
        db_url,
        3,
        "INSERT INTO video_pipelines_submissions (execution_id, plan, priority, state, created_at, updated_at, "
        f"tenant) VALUES ('exec_old', '{{}}', 'normal', 'launched', {at}, {at}, 'acme')",
        f"INSERT INTO video_pipelines_webhook_deliveries ({columns}) VALUES ('msg_exec_old_node.failed_a', "
        f"'exec_old', 'node.failed', 'a', 'http://receiver', '{{}}', 'delivered', 1, {at}, {at})",
        f"INSERT INTO video_pipelines_webhook_deliveries ({columns}) VALUES ('msg_exec_old_failed', "
        f"'exec_old', 'failed', '', 'http://receiver', '{{}}', 'failed', 2, {at}, {at})",
        "INSERT INTO video_pipelines_webhook_attempts (webhook_id, number, started_at, finished_at, "
        f"status_code, duration_ms) VALUES ('msg_exec_old_failed', 1, {at}, {at}, 500, 5)",
        "INSERT INTO video_pipelines_webhook_attempts (webhook_id, number, started_at, finished_at, "
        f"status_code, duration_ms) VALUES ('msg_exec_old_failed', 2, {at}, {at}, 410, 7)",
    )
    from video_pipelines.webhooks import DeliveryOutbox, DeliveryState

    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        old = opened.get("exec_old")
        assert old is not None and old.tenant == "acme" and old.state is SubmissionState.LAUNCHED
        outbox = DeliveryOutbox(opened)
        kept = outbox.deliveries("exec_old")
        assert [(d.webhook_id, d.attempt, d.state) for d in kept] == [
            ("msg_exec_old_failed", 1, DeliveryState.FAILED),
            ("msg_exec_old_node.failed_a", 1, DeliveryState.DELIVERED),
        ]
        assert [attempt.status_code for attempt in outbox.attempts("msg_exec_old_failed")] == [500, 410]

        def enqueue(event: str, node_id: str = "", attempt: int = 1) -> Any:
            later = datetime(2026, 1, 2, tzinfo=UTC) + timedelta(seconds=attempt)
            return outbox.enqueue(
                execution_id="exec_old",
                event=event,
                node_id=node_id,
                url="http://receiver/again",
                body=b"{}",
                secret_source=None,
                attempt=attempt,
                now=later,
            )

        assert enqueue("failed") == kept[0] and enqueue("node.failed", "a", attempt=1) == kept[1]
        second = enqueue("failed", attempt=2)
        second_node = enqueue("node.failed", "a", attempt=2)
        assert (second.webhook_id, second.attempt, second.state) == (
            "msg_exec_old_attempt2_failed",
            2,
            DeliveryState.PENDING,
        )
        assert second_node.webhook_id == "msg_exec_old_attempt2_node.failed_a"
        assert enqueue("failed", attempt=2) == second and enqueue("node.failed", "a", attempt=2) == second_node
        assert [d.webhook_id for d in outbox.deliveries("exec_old")] == [
            "msg_exec_old_failed",
            "msg_exec_old_node.failed_a",
            "msg_exec_old_attempt2_failed",
            "msg_exec_old_attempt2_node.failed_a",
        ]

    # The database's key, not only the webhook id, keeps one delivery per (execution, event, node, attempt).
    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        for attempt, webhook_id in ((2, "msg_other"), (1, "msg_another")):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.exec_driver_sql(
                    f"INSERT INTO video_pipelines_webhook_deliveries ({columns}, attempt) VALUES ('{webhook_id}', "
                    f"'exec_old', 'failed', '', 'http://receiver', '{{}}', 'pending', 0, {at}, {at}, {attempt})"
                )
        inspector = sa.inspect(engine)
        uniques = {c["name"] for c in inspector.get_unique_constraints("video_pipelines_webhook_deliveries")}
        indexes = {index["name"] for index in inspector.get_indexes("video_pipelines_webhook_deliveries")}
        attempt_indexes = {index["name"] for index in inspector.get_indexes("video_pipelines_attempts")}
    finally:
        engine.dispose()
    assert "uq_video_pipelines_webhook_deliveries_exec_event_node_attempt" in uniques
    assert "uq_video_pipelines_webhook_deliveries_execution_event_node" not in uniques
    assert "ix_video_pipelines_webhook_deliveries_due" in indexes
    assert attempt_indexes == {"ix_video_pipelines_attempts_state_requested"}
    versions = raw_rows(db_url, "SELECT version FROM video_pipelines_schema_version ORDER BY version")
    assert versions == [{"version": version} for version in VERSIONS] and SCHEMA_VERSION >= 5


def test_migration_6_keeps_a_digest_per_submission_and_trusts_the_keys_made_before(db_url: str) -> None:
    """A submission made before step 6 has no digest: its key still returns it (nothing tells another request)."""
    at = "'2026-01-01 00:00:00+00'"
    database_at(
        db_url,
        5,
        "INSERT INTO video_pipelines_submissions (execution_id, plan, priority, state, created_at, updated_at, "
        f"tenant, idempotency_key) VALUES ('exec_old', '{{}}', 'normal', 'pending', {at}, {at}, 'acme', 'k1')",
    )
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        old = opened.get("exec_old")
        assert old is not None and old.request_digest is None and old.idempotency_key == "k1"
        again, created = opened.submit(plan("anything"), SubmitOptions(idempotency_key="k1"), tenant="acme")
        assert not created and again.execution_id == "exec_old"
        new, created = opened.submit(plan(), SubmitOptions(idempotency_key="k2"), tenant="acme")
        assert created and new.request_digest is not None
        with pytest.raises(IdempotencyKeyReused):
            opened.submit(plan("another"), SubmitOptions(idempotency_key="k2"), tenant="acme")
    versions = raw_rows(db_url, "SELECT version FROM video_pipelines_schema_version ORDER BY version")
    assert versions == [{"version": version} for version in VERSIONS]


def test_stores_opening_at_once_migrate_once(db_url: str) -> None:
    stores = in_parallel(8, lambda _: SubmissionStore(db_url, secret_key=STORE_KEY))
    try:
        made = [opened.submit(plan(f"from store {n}"))[0] for n, opened in enumerate(stores)]
        assert {item.execution_id for item in stores[0].pending()} == {item.execution_id for item in made}
    finally:
        for opened in stores:
            opened.close()
    versions = raw_rows(db_url, "SELECT version FROM video_pipelines_schema_version ORDER BY version")
    assert versions == [{"version": version} for version in VERSIONS]


# --- attempts -----------------------------------------------------------------------


def test_an_attempt_request_is_idempotent_per_execution_and_number(store: SubmissionStore) -> None:
    attempts = AttemptStore(store)
    second, created = attempts.request("exec_a", 2, AttemptReason.RESUME, "run-1", now=T0)
    assert created
    assert second == RunAttempt(
        execution_id="exec_a",
        number=2,
        reason=AttemptReason.RESUME,
        previous_run_id="run-1",
        state=AttemptState.PENDING,
        run_id=None,
        requested_at=T0,
        launched_at=None,
    )
    again, created = attempts.request("exec_a", 2, AttemptReason.RETRY, "run-other", now=T0 + timedelta(hours=1))
    assert not created and again == second == attempts.get("exec_a", 2)
    third, created = attempts.request("exec_a", 3, AttemptReason.RETRY, "run-2", now=T0 - timedelta(hours=1))
    assert created and third.reason is AttemptReason.RETRY
    attempts.request("exec_b", 2, AttemptReason.RETRY, "run-b")
    assert attempts.of_execution("exec_a") == [second, third]
    assert attempts.get("exec_a", 4) is None and attempts.get("exec_c", 2) is None
    assert attempts.of_execution("exec_c") == []


@pytest.mark.parametrize(
    ("execution_id", "number", "previous", "now", "message"),
    [
        ("exec_a", 1, "run-1", None, "numbered from 2"),
        ("exec_a", 0, "run-1", None, "numbered from 2"),
        ("exec_a", 2, "", None, "needs the run id"),
        ("exec_a", 2, "run-1", datetime(2030, 1, 1), "timezone-aware"),
        ("", 2, "run-1", None, "needs its execution id"),
        ("x" * 65, 2, "run-1", None, "needs its execution id"),
    ],
)
def test_attempt_requests_that_cannot_be_kept_are_refused(
    store: SubmissionStore, execution_id: str, number: int, previous: str, now: datetime | None, message: str
) -> None:
    attempts = AttemptStore(store)
    with pytest.raises(SubmissionStoreError, match=message):
        attempts.request(execution_id, number, AttemptReason.RETRY, previous, now=now)
    with pytest.raises(SubmissionStoreError, match="reason must be one of resume, retry"):
        attempts.request("exec_a", 2, "again", "run-1")  # type: ignore[arg-type]
    assert attempts.of_execution(execution_id) == [] and attempts.of_execution("exec_a") == []


def test_racing_attempt_requests_make_one_attempt(db_url: str) -> None:
    # Four stores are four engines: to the database, four clients.
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    try:
        results = in_parallel(
            16, lambda i: AttemptStore(stores[i % 4]).request("exec_race", 2, AttemptReason.RESUME, f"run-{i}")
        )
    finally:
        for opened in stores:
            opened.close()

    assert sum(created for _, created in results) == 1
    assert len({attempt for attempt, _ in results}) == 1
    rows = raw_rows(db_url, "SELECT execution_id, number, previous_run_id FROM video_pipelines_attempts")
    assert rows == [{"execution_id": "exec_race", "number": 2, "previous_run_id": results[0][0].previous_run_id}]


def test_pending_attempts_oldest_first_each_launched_once(db_url: str, store: SubmissionStore) -> None:
    attempts = AttemptStore(store)
    late, _ = attempts.request("exec_a", 2, AttemptReason.RESUME, "run-a1", now=T0 + timedelta(minutes=2))
    early, _ = attempts.request("exec_b", 2, AttemptReason.RETRY, "run-b1", now=T0)
    middle, _ = attempts.request("exec_c", 3, AttemptReason.RETRY, "run-c2", now=T0 + timedelta(minutes=1))
    assert attempts.pending() == [early, middle, late]
    assert attempts.pending(limit=2) == [early, middle] and attempts.pending(limit=0) == []

    # Four stores racing to launch one attempt: one run is recorded.
    stores = [SubmissionStore(db_url, secret_key=STORE_KEY) for _ in range(4)]
    try:
        wins = in_parallel(12, lambda i: AttemptStore(stores[i % 4]).mark_launched("exec_b", 2, f"run-b2-{i}"))
    finally:
        for opened in stores:
            opened.close()
    assert wins.count(True) == 1
    launched = attempts.get("exec_b", 2)
    assert launched is not None and launched.state is AttemptState.LAUNCHED
    assert launched.run_id == f"run-b2-{wins.index(True)}"
    assert launched.launched_at is not None and launched.launched_at.tzinfo is UTC
    assert not attempts.mark_launched("exec_b", 2, "run-late") and attempts.get("exec_b", 2) == launched
    assert not attempts.mark_launched("exec_b", 3, "run-never") and attempts.get("exec_b", 3) is None
    assert attempts.pending() == [middle, late]


def test_cancel_pending_cancels_every_pending_attempt_of_the_execution(store: SubmissionStore) -> None:
    attempts = AttemptStore(store)
    attempts.request("exec_a", 2, AttemptReason.RESUME, "run-1", now=T0)
    assert attempts.mark_launched("exec_a", 2, "run-2")
    attempts.request("exec_a", 3, AttemptReason.RETRY, "run-2", now=T0)
    attempts.request("exec_a", 4, AttemptReason.RETRY, "run-2", now=T0)
    other, _ = attempts.request("exec_b", 2, AttemptReason.RETRY, "run-b", now=T0)

    assert attempts.cancel_pending("exec_a")
    assert [(a.number, a.state) for a in attempts.of_execution("exec_a")] == [
        (2, AttemptState.LAUNCHED),
        (3, AttemptState.CANCELED),
        (4, AttemptState.CANCELED),
    ]
    assert not attempts.cancel_pending("exec_a") and not attempts.cancel_pending("exec_unknown")
    assert not attempts.mark_launched("exec_a", 3, "run-3")
    assert attempts.pending() == [other]


def test_a_claimed_attempt_is_canceled_by_request_only(store: SubmissionStore) -> None:
    attempts = AttemptStore(store)
    attempts.request("exec_a", 2, AttemptReason.RETRY, "run-1", now=T0)
    attempts.request("exec_b", 2, AttemptReason.RETRY, "run-b", now=T0)
    assert attempts.claim("exec_a", 2) and not attempts.claim("exec_a", 2)
    claimed = attempts.get("exec_a", 2)
    assert claimed is not None and claimed.state is AttemptState.LAUNCHING and claimed.is_pending
    assert not attempts.cancel_pending("exec_a")  # claimed: its run is asked for
    assert attempts.request_cancel("exec_a") and not attempts.request_cancel("exec_b")
    requested = attempts.get("exec_a", 2)
    assert requested is not None and requested.cancel_requested_at is not None
    assert attempts.pending() == [requested, attempts.get("exec_b", 2)]
    assert attempts.mark_launched("exec_a", 2, "run-2")
    launched = attempts.get("exec_a", 2)
    assert launched is not None and launched.state is AttemptState.LAUNCHED and not launched.is_pending
    assert launched.cancel_requested_at == requested.cancel_requested_at
    assert attempts.cancel_pending("exec_b") and not attempts.claim("exec_b", 2)


def test_migration_8_keeps_submissions_and_attempts_and_adds_claims(db_url: str) -> None:
    """A database at schema 7 keeps its submissions and attempts (digests, outcomes) through step 8: LAUNCHING, requests."""
    at = "'2026-01-01 00:00:00+00'"
    submission = (
        "INSERT INTO video_pipelines_submissions (execution_id, plan, priority, state, created_at, updated_at, tenant, "
        "run_id, request_digest) VALUES ('{id}', '{{}}', 'normal', '{state}', {at}, {at}, 'acme', {run}, 'd-{id}')"
    )
    database_at(
        db_url,
        7,
        submission.format(id="exec_pending", state="pending", at=at, run="NULL"),
        submission.format(id="exec_done", state="launched", at=at, run="'run-1'"),
        "INSERT INTO video_pipelines_attempts (execution_id, number, reason, previous_run_id, state, requested_at) "
        f"VALUES ('exec_done', 2, 'retry', 'run-1', 'pending', {at})",
        "INSERT INTO video_pipelines_attempts (execution_id, number, reason, previous_run_id, state, requested_at, "
        f"outcome) VALUES ('exec_old', 2, 'resume', 'run-0', 'launched', {at}, 'completed')",
    )
    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        pending, done = opened.get("exec_pending"), opened.get("exec_done")
        assert pending is not None and (pending.state, pending.tenant) == (SubmissionState.PENDING, "acme")
        assert pending.request_digest == "d-exec_pending"
        assert done is not None and (done.state, done.run_id, done.cancel_requested_at) == (
            SubmissionState.LAUNCHED,
            "run-1",
            None,
        )
        assert opened.claim("exec_pending") and opened.request_cancel("exec_pending")
        attempts = AttemptStore(opened)
        assert [(a.number, a.state) for a in attempts.pending()] == [(2, AttemptState.PENDING)]
        assert attempts.claim("exec_done", 2) and attempts.request_cancel("exec_done")
    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.exec_driver_sql("UPDATE video_pipelines_submissions SET state = 'lost'")
        indexes = {index["name"] for index in sa.inspect(engine).get_indexes("video_pipelines_submissions")}
        attempt_indexes = {index["name"] for index in sa.inspect(engine).get_indexes("video_pipelines_attempts")}
    finally:
        engine.dispose()
    outcomes = raw_rows(db_url, "SELECT execution_id, outcome FROM video_pipelines_attempts ORDER BY execution_id")
    assert outcomes == [
        {"execution_id": "exec_done", "outcome": None},
        {"execution_id": "exec_old", "outcome": "completed"},
    ]
    assert {
        "ix_video_pipelines_submissions_state_created",
        "ix_video_pipelines_submissions_tenant_execution",
    } <= indexes
    assert attempt_indexes == {"ix_video_pipelines_attempts_state_requested"}


def test_a_newer_schema_is_refused(db_url: str) -> None:
    SubmissionStore(db_url, secret_key=STORE_KEY).close()
    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO video_pipelines_schema_version (version, description, applied_at) "
                    "VALUES (999, 'from the future', CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(SubmissionStoreError, match=r"version 999.*upgrade video-pipelines"):
        SubmissionStore(db_url, secret_key=STORE_KEY)


def test_sqlite_uses_wal_and_waits_for_a_busy_writer(tmp_path: Path) -> None:
    database = tmp_path / "submissions.db"
    with SubmissionStore(f"sqlite:///{database}", secret_key=STORE_KEY) as opened:
        other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE video_pipelines_schema_version SET description = description WHERE version = 1")
            release = threading.Timer(0.5, other.execute, args=("COMMIT",))
            release.start()
            submitted, created = opened.submit(plan())
            release.join()
        finally:
            other.close()
        assert created and opened.get(submitted.execution_id) == submitted


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://user@localhost/db", "supports PostgreSQL and SQLite, not 'mysql'"),
        ("sqlite://", "not an in-memory database"),
        ("sqlite:///:memory:", "not an in-memory database"),
        ("not a url", "cannot be parsed"),
    ],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(SubmissionStoreError, match=message):
        SubmissionStore(url, secret_key=STORE_KEY)


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(
        SubmissionStoreError, match=r"cannot open the submission store at postgresql\+psycopg2://u:\*\*\*@"
    ):
        SubmissionStore("postgresql://u:hunter2@127.0.0.1:1/nowhere", secret_key=STORE_KEY)


def test_submission_repr_and_states() -> None:
    assert [state.value for state in SubmissionState] == ["pending", "launching", "launched", "rejected", "canceled"]
    assert "webhook_secret" not in {field for field in Submission.__dataclass_fields__}
