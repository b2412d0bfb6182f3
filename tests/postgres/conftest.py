"""The store tests of tests/unit again, on PostgreSQL: here `db_url` is a fresh PostgreSQL database.

Each module here imports a unit module's tests; only those on a database (`db_url`, `store`, `postgres_url`) run.
"""

from __future__ import annotations

import pytest

from ..conftest import mark_folder


@pytest.fixture
def db_url(postgres_url: str) -> str:
    return postgres_url


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = mark_folder(items, __file__, pytest.mark.postgres)
    elsewhere = {item for item in ours if not {"db_url", "postgres_url"} & set(getattr(item, "fixturenames", ()))}
    if elsewhere:
        config.hook.pytest_deselected(items=list(elsewhere))
        items[:] = [item for item in items if item not in elsewhere]
