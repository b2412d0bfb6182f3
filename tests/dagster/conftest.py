"""Dagster tests: runs in process (`execute_in_process`), sensors built with `build_sensor_context`, instances."""

from __future__ import annotations

import multiprocessing.forkserver
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import DAGSTER_WARNINGS, mark_folder


@pytest.hookimpl(tryfirst=True)  # marked before `-m` selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, __file__, pytest.mark.dagster, *DAGSTER_WARNINGS)


@pytest.fixture(scope="session")
def dagster_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAGSTER_HOME whose embedded instance and submission store were opened once (their SQLite tables made).

    Making them costs ~0.35 CPU-s and ~2 s of SQLite writes; copying them, a tenth of that, for each of the
    hundreds of tests here that open an instance.
    """
    import dagster as dg

    from video_pipelines.deployment.instance import prepare_dagster_home
    from video_pipelines.submissions import SubmissionStore

    home = tmp_path_factory.mktemp("dagster_home_template") / "dagster_home"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("VIDEO_PIPELINES_DATABASE_URL", "VIDEO_PIPELINES_STORAGE_URL", "VIDEO_PIPELINES_BROKER_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("DAGSTER_HOME", str(home))
        prepare_dagster_home()
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
        with SubmissionStore.from_env(home) as store:
            store.newest(None)
    return home


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home_template: Path) -> Path:
    """As tests/conftest.py's `dagster_home` (the embedded default instance, its own artifact folder), the instance's
    and the store's tables copied from `dagster_home_template` instead of made again."""
    from video_pipelines.deployment.instance import prepare_dagster_home

    monkeypatch.delenv("VIDEO_PIPELINES_DATABASE_URL", raising=False)
    monkeypatch.delenv("VIDEO_PIPELINES_STORAGE_URL", raising=False)
    home = tmp_path / "dagster_home"
    shutil.copytree(dagster_home_template, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return prepare_dagster_home()


# The multiprocess executor's config for steps forked from a server that imported the job's module once, instead
# of spawned processes that each import Dagster and the package again (~3 CPU-s a step). With `forkserver`.
FORKSERVER = {"start_method": {"forkserver": {}}}


@pytest.fixture
def forkserver() -> Iterator[None]:
    """The forkserver of this test's runs (`FORKSERVER`), stopped after it: the server forks its steps with the
    environment it was started with, so each test starts its own, with its environment (DAGSTER_HOME and the rest)."""
    yield
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
