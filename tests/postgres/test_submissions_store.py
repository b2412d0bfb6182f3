"""unit/test_submissions_store.py's tests on a database, on PostgreSQL; and what only PostgreSQL does."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2
import pytest

from video_pipelines.errors import SecretKeyError
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import SubmissionStore, pooling

from ..unit.test_submissions_store import *  # noqa: F403
from ..unit.test_submissions_store import KEY_FILE_NAME, SECRET, SECRET_KEY_ENV, plan, raw_rows


def test_postgres_without_a_key_asks_for_one(postgres_url: str) -> None:
    with SubmissionStore(postgres_url) as opened:
        plain, created = opened.submit(plan())
        assert created and opened.webhook_secret(plain.execution_id) is None
        with pytest.raises(SecretKeyError, match=SECRET_KEY_ENV):
            opened.submit(plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET))
        assert [item.execution_id for item in opened.pending()] == [plain.execution_id]


def test_from_env_uses_postgres_when_the_url_is_set(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_DATABASE_URL", postgres_url)
    monkeypatch.setenv(SECRET_KEY_ENV, "a shared passphrase for every process")
    home = tmp_path / "home"
    with SubmissionStore.from_env(dagster_home=home) as opened:
        assert opened.url.startswith("postgresql+psycopg2://")
        submitted, _ = opened.submit(plan(), SubmitOptions(webhook_url="https://e.example.com", webhook_secret=SECRET))
        assert opened.webhook_secret(submitted.execution_id) == SECRET
    assert raw_rows(postgres_url, "SELECT execution_id FROM video_pipelines_submissions") == [
        {"execution_id": submitted.execution_id}
    ]
    assert not (home / "video_pipelines.db").exists()
    assert not (home / KEY_FILE_NAME).exists(), "the key comes from the environment"


@pytest.mark.parametrize("idle", [True, False], ids=["pinged after sitting idle", "used a moment ago"])
def test_a_connection_the_server_closed_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    """The store's pool pings a connection only after it sat idle, and looks at the socket of one used a moment ago
    (`submissions.pooling`, instead of a ping per query): one whose session PostgreSQL ended meanwhile (a restart,
    a failover, a terminated backend) is replaced unseen either way (CI: a status read right after a restart)."""
    with SubmissionStore(postgres_url) as opened:
        submitted, _ = opened.submit(plan())
        monkeypatch.setattr(pooling, "PING_IDLE_SECONDS", 0.0 if idle else 3600.0)
        admin = psycopg2.connect(postgres_url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (terminated,) = cursor.fetchone()
            assert terminated >= 1
            deadline = time.monotonic() + 10
            while True:  # until the terminated backends have exited (their goodbye is on our sockets then)
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0] == 0:
                    break
                assert time.monotonic() < deadline, "the terminated backends did not exit"
                time.sleep(0.01)
        admin.close()
        assert opened.get(submitted.execution_id) is not None
