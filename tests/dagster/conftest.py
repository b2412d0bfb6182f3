"""Dagster tests: runs in process (`execute_in_process`), sensors built with `build_sensor_context`, instances."""

from __future__ import annotations

import pytest

from ..conftest import DAGSTER_WARNINGS, mark_folder


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, __file__, pytest.mark.dagster, *DAGSTER_WARNINGS)
