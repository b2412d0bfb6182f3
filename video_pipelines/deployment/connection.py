"""Opening a deployment, as every door does; apart from `instance`, which commands that need no Dagster import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.submissions import SubmissionStore


@contextmanager
def open_deployment(home: Path | None = None) -> Iterator[tuple[dg.DagsterInstance, SubmissionStore]]:
    """The Dagster instance and submission store of `home` (prepared; default: the environment's), for a door."""
    with SubmissionStore.from_env(prepare_dagster_home(home)) as store, dg.DagsterInstance.get() as instance:
        yield instance, store
