"""Captions through the API and the job: served with their content types; real speech captioned and reused."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.executions import execution_status
from video_pipelines.executions.notifications import node_payload, webhook_payload
from video_pipelines.operations import generate_clip
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.storage import LocalArtifactStore

from ..conftest import MediaServer
from ..media import frame_rgb, local_path_of
from ..speech import require_engine, speak, srt_text, word_error_rate
from ..unit.test_captions import SENTENCE, run_subtitles
from .harness import node_results, run_plan_in_process


def test_the_api_serves_captions_with_their_content_types(
    dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = tmp_path / "artifacts", "http://testserver/artifacts"
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", root.as_uri())
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", base)
    store = LocalArtifactStore(root, base_url=base)
    generate_clip(tmp_path / "c.mp4", prompt="api", width=160, height=90, duration=1, seed=2)
    run = run_subtitles({"text": "Served"}, tmp_path / "c.mp4", store)
    assert run.result.captions is not None
    with TestClient(create_app(ApiSettings())) as client:
        srt, vtt = client.get(run.result.captions.srt), client.get(run.result.captions.vtt)
    assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    assert "Served" in srt.text and vtt.text.startswith("WEBVTT")


def test_real_speech_is_lip_synced_captioned_burned_and_in_the_sidecars(
    dagster_home: Path, media_server: MediaServer
) -> None:
    require_engine("festival-hts")
    speak(SENTENCE, media_server.root / "english.wav")
    plan = {
        "jobs": [
            {"id": "clip", "type": "generateVideo", "params": {"prompt": "A talk", "duration": 4, "resolution": 180}},
            {"id": "voice", "type": "lipSync", "params": {"audioUrl": media_server.url("english.wav")},
             "dependsOn": ["clip"]},
            {"id": "subs", "type": "addSubtitles", "params": {"language": "en"}, "dependsOn": ["voice"]},
        ]
    }  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert result.success
        videos = node_results(result)
        captions = videos["subs"].captions
        assert captions is not None
        srt = local_path_of(captions.srt).read_text(encoding="utf-8")
        vtt = local_path_of(captions.vtt).read_text(encoding="utf-8")
        wer = word_error_rate(SENTENCE, srt_text(srt))
        print(f"word error rate {wer:.0%}: {srt_text(srt)!r} for {SENTENCE!r}")
        assert wer <= 0.30
        assert vtt.startswith("WEBVTT") and word_error_rate(SENTENCE, srt_text(vtt.removeprefix("WEBVTT"))) == wer
        # Burned in: the subtitle band of a frame differs from the lip-synced source's.
        source = frame_rgb(local_path_of(videos["voice"].url), 1.5)
        burned = frame_rgb(local_path_of(videos["subs"].url), 1.5)
        band = range(320 * 3 * 130, 320 * 3 * 175)
        assert sum(1 for i in band if abs(source[i] - burned[i]) > 60) > 200

        records = DagsterRunRecords(instance)
        status = execution_status(records, None, result.run_id)
        wire = status.to_wire()
        assert wire["result"]["captions"] == captions.to_wire() == wire["jobs"]["subs"]["result"]["captions"]
        assert node_payload(status, "subs")["result"]["captions"] == captions.to_wire()
        assert webhook_payload(status)["video"]["captions"] == captions.to_wire()  # the end's webhook too

        # Run again: the captioned result is reused by lineage, captions and all.
        again = run_plan_in_process(plan, instance)
        assert again.success
        reused = execution_status(records, None, again.run_id).to_wire()
        assert reused["jobs"]["subs"]["reusedFrom"] == result.run_id
        assert reused["jobs"]["subs"]["result"]["captions"] == captions.to_wire()
