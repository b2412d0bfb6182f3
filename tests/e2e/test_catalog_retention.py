"""End to end: the daemon's catalog-retention sensor prunes old partitions on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from video_pipelines.orchestration.catalog.assets import add_node_partitions, partition_key
from video_pipelines.orchestration.catalog.retention import (
    CATALOG_RETENTION_ENV,
)
from video_pipelines.plan import parse_plan

from ..dagster.test_catalog_retention import DAY, PLAN, execution_id_made_at, partition_keys
from ..processes import WORKSPACE, dagster_deployment, deployment_database


@pytest.mark.postgres
def test_the_daemon_prunes_the_catalog_on_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = parse_plan(PLAN).nodes
    old = execution_id_made_at(time.time() - 40 * DAY)
    recent = execution_id_made_at(time.time() - 60)
    env = {CATALOG_RETENTION_ENV: "30"}
    with (
        deployment_database() as url,
        dagster_deployment(tmp_path, url, daemon=False, extra_env=env, webserver=False) as deployment,
        deployment.client(monkeypatch) as target,
    ):
        add_node_partitions(target.instance, old, nodes)
        add_node_partitions(target.instance, recent, nodes)
        # The sensor's first tick comes as the daemon starts; the next one an hour later.
        deployment.start("daemon", ["video-pipelines", "daemon", "-w", str(WORKSPACE)])
        wait_until = time.monotonic() + 90
        while partition_keys(target.instance) != {partition_key(recent, n) for n in ("clip", "square")}:
            assert time.monotonic() < wait_until, deployment.log_tail()
            time.sleep(0.5)
        [state] = [state for state in target.instance.all_instigator_state() if state.name == "catalog_retention"]
        # The tick is written as it starts and gets its reason when it ends, a moment after the deletes.
        while not (ticks := target.instance.get_ticks(state.instigator_origin_id, state.selector_id))[0].skip_reason:
            assert time.monotonic() < wait_until, deployment.log_tail()
            time.sleep(0.2)
    assert len(ticks) == 1, [tick.skip_reason for tick in ticks]
    reason = ticks[0].skip_reason or ""
    assert reason.startswith("deleted 2 partition(s) of 1 execution(s) ended before ") and reason.endswith("; kept 1")
