"""End to end: real processes (dagster-webserver and dagster-daemon, the API, Celery workers, a browser)."""

from __future__ import annotations

import pytest

from ..conftest import DAGSTER_WARNINGS, mark_folder


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, __file__, pytest.mark.e2e, *DAGSTER_WARNINGS)
