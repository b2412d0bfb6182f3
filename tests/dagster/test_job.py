"""The execute_plan job on real media, in process and through the `dagster` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from video_pipelines.executions import EXECUTION_ID_TAG
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.job.state import mapping_key
from video_pipelines.storage.digest import file_sha256

from ..conftest import MediaServer
from ..media import dominant_frequency, local_path_of, make_tone, pcm_mono
from .harness import node_results, run_plan_in_process

REPO = Path(__file__).resolve().parents[2]


def small_gen(node_id: str, prompt: str, duration: float = 1, **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "generateVideo",
        "params": {"prompt": prompt, "duration": duration, "resolution": 90, **params},
    }


def step_keys(result: dg.ExecuteInProcessResult) -> list[str]:
    return [event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"]


def test_vertical_short_runs_one_step_per_node(dagster_home: Path) -> None:
    plan = {
        "jobs": [
            small_gen("clip", "A beautiful landscape", duration=2),
            {"id": "vertical", "type": "reframe", "params": {"aspectRatio": "9:16"}, "dependsOn": ["clip"]},
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.tags[EXECUTION_ID_TAG] == result.run_id
    assert "node[clip]" in step_keys(result)
    assert "node[vertical]" in step_keys(result)
    videos = node_results(result)
    clip, vertical = probe(local_path_of(videos["clip"].url)), probe(local_path_of(videos["vertical"].url))
    assert (clip.width, clip.height) == (160, 90) and abs(clip.duration - 2) < 0.1
    assert vertical.height > vertical.width and abs(vertical.width / vertical.height - 9 / 16) < 0.02
    assert videos["vertical"].aspect_ratio == "9:16"
    assert videos["vertical"].sha256 == file_sha256(local_path_of(videos["vertical"].url))
    assert (vertical.video_codec, vertical.audio_codec) == ("h264", "aac")
    # Artifacts are content-addressed under DAGSTER_HOME/artifacts.
    assert str(dagster_home / "artifacts") in videos["clip"].url


def test_materialization_metadata_holds_the_result(dagster_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process({"jobs": [small_gen("only", "meta")]}, instance)
    [event] = result.get_asset_materialization_events()
    materialization = event.step_materialization_data.materialization
    assert materialization.asset_key == dg.AssetKey(["video", "generate_video"])
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["node_id"] == "only" and metadata["execution_id"] == result.run_id
    assert metadata["provider"] == "local" and metadata["status"] == "completed"
    assert len(str(metadata["lineage"])) == 64 and float(metadata["work_seconds"]) > 0  # type: ignore[arg-type]
    assert set(metadata["result"]) == {  # type: ignore[arg-type]
        "url", "duration", "width", "height", "aspectRatio", "sizeBytes", "sha256", "status"
    }  # fmt: skip


def test_full_pipeline_with_lip_sync_subtitles_and_reframe(dagster_home: Path, media_server: MediaServer) -> None:
    make_tone(media_server.root / "french.mp3", 1000, 5)
    plan = {
        "jobs": [
            small_gen("scene-1", "Scene 1: a sunrise", duration=2, seed=1),
            small_gen("scene-2", "Scene 2: the desk", duration=2, seed=2),
            {
                "id": "merged",
                "type": "merge",
                "params": {"transition": "crossfade"},
                "dependsOn": ["scene-1", "scene-2"],
            },
            {
                "id": "french",
                "type": "lipSync",
                "params": {"audioUrl": media_server.url("french.mp3")},
                "dependsOn": ["merged"],
            },
            {
                "id": "subs",
                "type": "addSubtitles",
                "params": {"text": "Bonjour ! 100% {\\b1}", "language": "fr"},
                "dependsOn": ["french"],
            },
            {
                "id": "square",
                "type": "reframe",
                "params": {"aspectRatio": "1:1", "mode": "blur"},
                "dependsOn": ["subs"],
            },
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
    assert result.success
    assert f"node[{mapping_key('scene-1')}]" in step_keys(result)
    videos = node_results(result)
    merged = probe(local_path_of(videos["merged"].url))
    assert abs(merged.duration - 3.5) < 0.15  # 2 + 2 - 0.5 crossfade
    french = local_path_of(videos["french"].url)
    assert abs(probe(french).duration - merged.duration) < 0.1
    assert abs(dominant_frequency(pcm_mono(french)) - 1000) < 30  # the French audio is the audio of the result
    assert abs(dominant_frequency(pcm_mono(local_path_of(videos["merged"].url))) - 1000) > 50
    square = probe(local_path_of(videos["square"].url))
    assert square.width == square.height and square.audio_codec == "aac"
    assert abs(square.duration - merged.duration) < 0.1


def test_invalid_plan_fails_before_any_node_runs(dagster_home: Path) -> None:
    config = {"ops": {"plan": {"config": {"jobs": [
        {"id": "bad", "type": "generateVideo", "params": {"duration": 3}},
        {"id": "m", "type": "merge", "dependsOn": ["bad", "ghost"]},
    ]}}}}  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        result = execute_plan_job().execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "plan"
    message = str(failure.event_specific_data.error.message)  # type: ignore[union-attr]
    assert "m.dependsOn: unknown dependency 'ghost'" in message
    assert not result.get_asset_materialization_events()


def test_plaintext_webhook_secret_is_refused_before_the_run_exists(dagster_home: Path) -> None:
    config = {"ops": {"plan": {"config": {
        "jobs": [small_gen("a", "x")],
        "webhook": {"url": "https://example.com/hook", "secret": "hunter2"},
    }}}}  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError) as info:
            execute_plan_job().execute_in_process(run_config=config, instance=instance)
        assert "secretEnv" in str(info.value)
        assert instance.get_runs_count() == 0


def test_transient_fetch_error_is_retried_and_bad_input_is_not(dagster_home: Path, media_server: MediaServer) -> None:
    make_tone(media_server.root / "voice.mp3", 700, 1)
    media_server.fail_next["voice.mp3"] = [503]
    plan = {"jobs": [
        small_gen("g", "retry me"),
        {"id": "voice", "type": "lipSync", "params": {"audioUrl": media_server.url("voice.mp3")}, "dependsOn": ["g"]},
    ]}  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert result.success
        retries = [e.step_key for e in instance.all_logs(result.run_id) if "transient failure" in e.user_message]
        assert retries == ["node[voice]"]  # retried inside its step: no STEP_UP_FOR_RETRY
        plan["jobs"][1]["params"]["audioUrl"] = media_server.url("missing.mp3")  # type: ignore[index]
        failed = run_plan_in_process(plan, instance)
    assert not failed.success
    assert not [e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "voice (lipSync) failed" in str(failure.event_specific_data.error.message)  # type: ignore[union-attr]


def test_dagster_cli_executes_product_demo(tmp_path: Path) -> None:
    """`dagster job execute -f definitions.py -j execute_plan -c <config>` writes the 8 s demo video."""
    plan = json.loads((REPO / "video_pipelines" / "examples" / "product_demo.json").read_text())
    config = tmp_path / "run_config.yaml"
    config.write_text(yaml.safe_dump({"ops": {"plan": {"config": plan}}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "VIDEO_PIPELINES_STORAGE_URL": (tmp_path / "art").as_uri(),
    }
    env.pop("VIDEO_PIPELINES_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-f", "definitions.py", "-j", "execute_plan", "-c", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    videos = sorted((tmp_path / "art").rglob("*.mp4"), key=lambda p: p.stat().st_mtime)
    assert len(videos) == 4
    final = probe(videos[-1])
    assert abs(final.duration - 8.0) <= 0.3
    assert (final.width, final.height) == (1280, 720)
    assert (final.video_codec, final.audio_codec) == ("h264", "aac")


def test_plan_on_s3_storage(
    dagster_home: Path, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node writes to S3, and downstream nodes read their inputs back from S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", f"s3://{s3_bucket}/renders")
    plan = {"jobs": [
        small_gen("a", "first"),
        small_gen("b", "second"),
        {"id": "m", "type": "merge", "params": {"transition": "fade", "transitionDuration": 0.25}, "dependsOn": ["a", "b"]},
    ]}  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
    assert result.success
    videos = node_results(result)
    import boto3
    import httpx

    listing = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="renders/videos/")
    assert sorted(item["Key"].rsplit("/", 1)[1] for item in listing["Contents"]) == sorted(
        f"{video.sha256}.mp4" for video in videos.values()
    )
    merged = httpx.get(videos["m"].url, timeout=30)  # a presigned URL a client can open
    assert merged.status_code == 200 and len(merged.content) == videos["m"].size_bytes
    downloaded = dagster_home / "merged.mp4"
    downloaded.write_bytes(merged.content)
    assert abs(probe(downloaded).duration - 1.75) < 0.1
