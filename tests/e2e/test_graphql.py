"""End to end: GraphQL launchRun on a real dagster-webserver + dagster-daemon with PostgreSQL storage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from video_pipelines.operations.ffmpeg import probe

from ..processes import LOCATION, dagster_deployment

pytestmark = pytest.mark.postgres

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } stepStats { stepKey status } }
  }
}
"""


def launch_params(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "execute_plan",
        },
        "runConfigData": {"ops": {"plan": {"config": plan}}},
    }


def test_graphql_launch_run_on_postgres_with_the_daemon(tmp_path: Path, postgres_url: str) -> None:
    plan = {
        "jobs": [
            {
                "id": "job1",
                "type": "generateVideo",
                "params": {"prompt": "Scene 1", "duration": 1, "resolution": 90},
            },
            {
                "id": "job2",
                "type": "generateVideo",
                "params": {"prompt": "Scene 2", "duration": 1, "resolution": 90},
            },
            {
                "id": "job3",
                "type": "merge",
                "params": {"transition": "crossfade"},
                "dependsOn": ["job1", "job2"],
            },
        ]
    }
    # Dagster's own dagster-daemon, as a deployment that does not use ours would run it.
    with dagster_deployment(tmp_path, postgres_url, plain_daemon=True) as deployment:
        invalid = deployment.graphql(LAUNCH, {"params": launch_params({"jobs": [{"id": "x", "params": "nope"}]})})
        assert invalid["launchRun"]["__typename"] == "RunConfigValidationInvalid"

        launched = deployment.graphql(LAUNCH, {"params": launch_params(plan)})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        deadline = time.monotonic() + 240
        while True:
            run = deployment.graphql(RUN, {"runId": run_id})["runOrError"]
            if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert run["status"] == "SUCCESS", deployment.log_tail()
        steps = {step["stepKey"]: step["status"] for step in run["stepStats"]}
        node_steps = {key for key in steps if key.startswith("node[")}
        assert node_steps == {"node[job1]", "node[job2]", "node[job3]"}
        assert all(steps[key] == "SUCCESS" for key in node_steps)
        assert {"key": "video/execution_id", "value": run_id} in run["tags"]

    # The run and its events live in PostgreSQL, not in a SQLite file.
    with psycopg2.connect(postgres_url) as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        [(runs,)] = cursor.fetchall()
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        [(materializations,)] = cursor.fetchall()
    assert runs == 1 and materializations == 3
    videos = list((tmp_path / "artifacts").rglob("*.mp4"))
    assert len(videos) == 3
    assert max(probe(video).duration for video in videos) == pytest.approx(1.5, abs=0.1)
