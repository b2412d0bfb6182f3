"""A failed node reads like our messages in the UI: our line first, what to do beside it, no chained trace; and
it leaves no partition in the catalog, where lineage would count it as missing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from video_pipelines.orchestration.catalog.assets import partition_key, partitions_of
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.plan import Operation

from ..conftest import MediaServer
from .harness import run_plan_in_process

REPO = Path(__file__).resolve().parents[2]
PARTITION_STATS = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { partitionStats { numMaterialized numPartitions numFailed numMaterializing } }
  }
}
"""
SCENE = {"id": "scene", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 64}}


def test_a_failed_node_shows_our_message_and_what_to_do_and_is_no_missing_partition(
    dagster_home: Path, media_server: MediaServer
) -> None:
    gone = media_server.url("gone.mp3")
    voice = {"id": "voice", "type": "lipSync", "params": {"audioUrl": gone}, "dependsOn": ["scene"]}
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process({"jobs": [SCENE, voice]}, instance)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        debug = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 10]
        scenes = instance.get_dynamic_partitions(partitions_of(Operation.GENERATE_VIDEO))
        assert scenes == [partition_key(result.run_id, "scene")]
        assert instance.get_dynamic_partitions(partitions_of(Operation.LIP_SYNC)) == []
        with define_out_of_process_context(str(REPO / "definitions.py"), "defs", instance) as context:
            stats = [
                execute_dagster_graphql(
                    context, PARTITION_STATS, {"key": {"path": ["video", operation.snake_name]}}
                ).data["assetNodeOrError"]["partitionStats"]
                for operation in (Operation.GENERATE_VIDEO, Operation.LIP_SYNC)
            ]
    # What lineage shows: every partition filled (a failed node's partition made it "50% filled").
    assert stats[0] == {"numMaterialized": 1, "numPartitions": 1, "numFailed": 0, "numMaterializing": 0}
    assert stats[1]["numPartitions"] == 0
    data = failure.step_failure_data
    # What the UI shows first: the exception's line, then the failure's metadata, then its traces.
    message = f"voice (lipSync) failed: {gone} answered HTTP 404 File not found"
    assert data.error is not None and data.error.message.strip() == f"StepFailed: {message}"
    assert data.error.cause is None and data.error.context is None  # no trace of our internals under it
    assert not [frame for frame in data.error.stack if "video_pipelines/net" in frame]
    assert data.user_failure_data is not None and data.user_failure_data.description == message
    metadata = {key: value.value for key, value in data.user_failure_data.metadata.items()}
    assert metadata["node_id"] == "voice" and metadata["operation"] == "lipSync"
    assert metadata["execution_id"] == result.run_id
    assert str(metadata["what to do"]).startswith("fix what the message names in node voice")
    # The error's full trace is kept, in the run's debug log.
    [trace] = [line for line in debug if line.startswith("voice: trace of its error")]
    assert "FetchError" in trace and "video_pipelines/net/fetch.py" in trace


def test_an_invalid_plan_says_how_to_fix_it(dagster_home: Path) -> None:
    config = {"ops": {"plan": {"config": {"jobs": [{**SCENE, "dependsOn": ["ghost"]}]}}}}
    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    assert data.error is not None and data.error.message.startswith("StepFailed: invalid plan:")
    assert data.user_failure_data is not None
    assert str(data.user_failure_data.metadata["what to do"].value).startswith("fix the plan")
