"""End to end: real processes (dagster-webserver and dagster-daemon, the API, Celery workers, a browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import DAGSTER_WARNINGS, mark_folder
from ..processes import DagsterDeployment, dagster_deployment, deployment_database
from ..unit.test_providers_replicate_fal import TOKEN, FakeReplicate


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects, and before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in mark_folder(items, __file__, pytest.mark.e2e, *DAGSTER_WARNINGS):
        split_group_by_module_param(item)


def split_group_by_module_param(item: pytest.Item) -> None:
    """A module's `xdist_group` becomes one group per param of its module-scoped fixtures (test_workers.py's
    brokers, test_cancel_race.py's launchers): each param has a deployment of its own anyway, and two groups of a
    few minutes each can run on two workers at once instead of one after the other on one."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or item.get_closest_marker("xdist_group") is None:
        return
    fixtures = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    for name, value in callspec.params.items():
        if name in fixtures and fixtures[name][-1].scope == "module":
            item.add_marker(pytest.mark.xdist_group(f"{name}={value}"))


@pytest.fixture
def stalled_replicate(clip: bytes) -> Iterator[FakeReplicate]:
    """A local Replicate whose predictions never finish: what a deadline or a cancel must end."""
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, outcome="never")
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def stalled_deployment(tmp_path: Path, stalled_replicate: FakeReplicate) -> Iterator[DagsterDeployment]:
    """Dagster's daemon and webserver on a fresh PostgreSQL database, Replicate calls going to `stalled_replicate`."""
    env = {
        "VIDEO_PIPELINES_ALLOWED_HOSTS": "127.0.0.1",
        "VIDEO_PIPELINES_SECRET_KEY": "e2e-stalled-provider",
        # The run holds its worker on the prediction: what run monitoring's deadline and a cancel of a live run end
        # (a parked execution's are in test_parking.py).
        "VIDEO_PIPELINES_PARKING": "off",
        "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_API_BASE_URL": stalled_replicate.base_url,
    }
    with deployment_database() as url, dagster_deployment(tmp_path, url, extra_env=env, webserver=False) as deployment:
        yield deployment
