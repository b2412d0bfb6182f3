"""Unit tests: no Dagster and no service (PostgreSQL, Redis, RabbitMQ, started processes); all of them in seconds.

A unit test that imports Dagster fails: test_no_dagster.py imports every module here in a clean
interpreter, and in a session of unit tests only each test checks that Dagster is still not loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from video_pipelines.submissions import SubmissionStore

from ..conftest import mark_folder

ONLY_UNIT = pytest.StashKey[bool]()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The store's database: a SQLite file (tests/postgres runs the same tests on PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'db' / 'video_pipelines.db'}"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SubmissionStore]:
    """A store on SQLite only, where tests/postgres need not run a test again."""
    with SubmissionStore(f"sqlite:///{tmp_path / 'submissions.db'}", secret_key=Fernet.generate_key()) as opened:
        yield opened


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = mark_folder(items, __file__, pytest.mark.unit)
    config.stash[ONLY_UNIT] = len(ours) == len(items)


@pytest.fixture(autouse=True)
def _no_dagster(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.config.stash.get(ONLY_UNIT, False) and "dagster" in sys.modules:
        pytest.fail("a unit test loaded dagster: move it to tests/dagster (or find what imports dagster)")
