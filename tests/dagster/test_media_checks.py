"""Media checks: each check fails on a crafted bad video and passes on good ones; execute_plan records them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from tests.conftest import MediaServer
from tests.media import ffmpeg, make_tone
from video_pipelines.errors import MediaError
from video_pipelines.executions.status import execution_status
from video_pipelines.nodes.checks import audio_expected, expectations_for
from video_pipelines.nodes.runner import NodeChecks, NodeEnvironment, run_node
from video_pipelines.operations.checks import (
    DEFAULT_BLOCKING,
    CheckName,
    MediaChecksFailed,
    MediaExpectations,
    analyse,
    blocking_failure,
    check_media,
    parse_blocking,
)
from video_pipelines.operations.generate import generate_clip
from video_pipelines.orchestration.catalog.assets import partition_key
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import parse_plan
from video_pipelines.plan.model import PlanNode
from video_pipelines.plan.params import Operation
from video_pipelines.plan.results import VideoResult
from video_pipelines.storage import LocalArtifactStore

from .harness import run_plan_in_process

WIDE = "160x90"
EXPECTED = MediaExpectations(duration=2.0, aspect_ratio="16:9", audio=True)
TONE = "sine=frequency=440:sample_rate=48000"
SILENCE = "anullsrc=r=48000:cl=stereo"


def clip(path: Path, *, video: str = f"testsrc2=s={WIDE}:r=25", audio: str | None = TONE, seconds: float = 2) -> Path:
    inputs = ["-f", "lavfi", "-t", str(seconds), "-i", video]
    if audio is not None:
        inputs += ["-f", "lavfi", "-t", str(seconds), "-i", audio]
    ffmpeg(*inputs, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checks")
    generated = folder / "generated.mp4"
    generate_clip(generated, prompt="a good clip", duration=2, width=160, height=90, seed=7)
    faded = folder / "faded.mp4"  # 1.5 s of picture, then 0.5 s of black: a fade out, not a black video
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s={WIDE}:r=25:d=2", "-f", "lavfi", "-t", "2", "-i", TONE,
        "-vf", "drawbox=t=fill:c=black:enable='gte(t,1.5)'",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(faded),
    )  # fmt: skip
    return {
        "generated": generated,
        "faded": faded,
        "black": clip(folder / "black.mp4", video=f"color=black:s={WIDE}:r=25"),
        "silent": clip(folder / "silent.mp4", audio=SILENCE),
        "no_audio": clip(folder / "no_audio.mp4", audio=None),
        "square": clip(folder / "square.mp4", video="testsrc2=s=90x90:r=25"),
        "short": clip(folder / "short.mp4", seconds=1),
    }


def failed(path: Path, expected: MediaExpectations = EXPECTED) -> dict[str, str]:
    outcomes = check_media(path, expected, subject="scene_1 (generateVideo)")
    return {outcome.name.value: outcome.message for outcome in outcomes if not outcome.passed}


def test_good_videos_pass_every_check(videos: dict[str, Path]) -> None:
    assert failed(videos["generated"]) == {}
    assert failed(videos["faded"]) == {}  # a fade to black is not a black video
    facts = analyse(videos["faded"])
    assert 0.4 <= facts.black_seconds <= 0.6 and facts.silent_seconds == 0.0


@pytest.mark.parametrize(
    ("video", "check", "numbers"),
    [
        ("black", "not_black", "black for 2.00 s of 2.00 s (100%)"),
        ("silent", "not_silent", "silent (below -50 dB) for 2.00 s of 2.00 s (100%)"),
        ("no_audio", "streams", "has no audio stream, but its video should have sound"),
        ("square", "aspect_ratio", "is 90x90 (1.000:1), expected 16:9 (1.778:1)"),
        ("short", "duration", "lasts 1.00 s, expected 2.00 s ± 0.25 s (too short by 1.00 s)"),
    ],
)
def test_each_check_fails_on_its_bad_video_naming_the_node_and_the_numbers(
    videos: dict[str, Path], video: str, check: str, numbers: str
) -> None:
    problems = failed(videos[video])
    assert check in problems, problems
    assert problems[check].startswith(f"{check}: scene_1 (generateVideo) ")
    assert numbers in problems[check]
    # Only that check fails (a video with no audio is not heard either).
    assert set(problems) == ({check} if video != "no_audio" else {"streams", "not_silent"})


def test_sound_is_checked_only_where_it_is_expected(videos: dict[str, Path]) -> None:
    quiet = MediaExpectations(duration=2.0, aspect_ratio="16:9", audio=False)
    assert failed(videos["silent"], quiet) == {}
    assert failed(videos["no_audio"], quiet) == {}


def test_blocking_checks_make_the_failure_that_fails_the_node(videos: dict[str, Path]) -> None:
    outcomes = check_media(videos["no_audio"], EXPECTED, subject="voice (lipSync)")
    failure = blocking_failure(outcomes)
    assert failure is not None and failure.outcomes == tuple(outcomes)
    assert str(failure).startswith("blocking media check failed: streams: voice (lipSync) has no audio stream")
    black = check_media(videos["black"], EXPECTED, subject="s (generateVideo)")
    assert blocking_failure(black) is None  # not_black warns by default
    assert blocking_failure(check_media(videos["black"], EXPECTED, subject="s", blocking=parse_blocking("all")))


def test_the_blocking_setting() -> None:
    assert parse_blocking(None) == parse_blocking("") == DEFAULT_BLOCKING == {CheckName.STREAMS}
    assert parse_blocking("none") == frozenset()
    assert parse_blocking("all") == frozenset(CheckName)
    assert parse_blocking(" duration, NOT_BLACK ") == {CheckName.DURATION, CheckName.NOT_BLACK}
    with pytest.raises(MediaError, match="VIDEO_PIPELINES_BLOCKING_CHECKS: unknown check"):
        parse_blocking("duraton")


def test_what_each_node_expects() -> None:
    plan = parse_plan(
        {
            "jobs": [
                {
                    "id": "local",
                    "type": "generateVideo",
                    "params": {"prompt": "a", "duration": 3, "aspectRatio": "9:16"},
                },
                {"id": "remote", "type": "generateVideo", "params": {"prompt": "b", "provider": "fal"}},
                {
                    "id": "both",
                    "type": "merge",
                    "params": {"transition": "crossfade"},
                    "dependsOn": ["local", "remote"],
                },
                {"id": "wide", "type": "reframe", "params": {"aspectRatio": "16:9"}, "dependsOn": ["remote"]},
                {"id": "voice", "type": "lipSync", "params": {"audioUrl": "https://x/v.mp3"}, "dependsOn": ["wide"]},
            ]
        }
    )
    assert audio_expected(plan) == {"local": True, "remote": False, "both": True, "wide": False, "voice": True}
    inputs = [VideoResult("u", 3.0, 720, 1280, "9:16", 1, "a"), VideoResult("u", 5.0, 720, 1280, "9:16", 1, "b")]
    nodes = plan.by_id

    def expects(node_id: str, given: list[VideoResult]) -> MediaExpectations:
        node = nodes[node_id]
        return expectations_for(node, node.typed_params({}), given, audio=audio_expected(plan)[node_id])

    assert expects("local", []) == MediaExpectations(3.0, "9:16", True)
    assert expects("both", inputs) == MediaExpectations(7.5, "9:16", True)
    assert expects("wide", inputs[1:]) == MediaExpectations(5.0, "16:9", False)
    assert expects("voice", inputs[1:]) == MediaExpectations(5.0, "9:16", True)


def check_history(instance: dg.DagsterInstance, kind: str, check: str, partition: str) -> list[Any]:
    key = dg.AssetCheckKey(dg.AssetKey(["video", kind]), check)
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    return [record for record in history if record.partition == partition]


def test_execute_plan_records_each_nodes_checks_and_a_blocking_failure_fails_the_node(
    dagster_home: Path, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ffmpeg("-f", "lavfi", "-t", "1", "-i", SILENCE, "-c:a", "libmp3lame", str(media_server.root / "mute.mp3"))
    make_tone(media_server.root / "voice.mp3", 700, 1)
    plan: dict[str, Any] = {
        "jobs": [
            {"id": "scene", "type": "generateVideo", "params": {"prompt": "x", "duration": 1, "resolution": 90}},
            {
                "id": "voice",
                "type": "lipSync",
                "params": {"audioUrl": media_server.url("mute.mp3")},
                "dependsOn": ["scene"],
            },
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert result.success  # not_silent does not block by default: the node completes, its check failed
        records = DagsterRunRecords(instance)
        wire = execution_status(records, None, result.run_id).to_wire()
        for node_id in ("scene", "voice"):
            checks = wire["jobs"][node_id]["checks"]
            assert [check["name"] for check in checks] == [name.value for name in CheckName]
        voice = {check["name"]: check for check in wire["jobs"]["voice"]["checks"]}
        assert voice["not_silent"]["passed"] is False and voice["not_silent"]["blocking"] is False
        assert voice["not_silent"]["message"].startswith("not_silent: voice (lipSync) is silent")
        assert all(check["passed"] for check in wire["jobs"]["scene"]["checks"])
        # The asset's checks, as the UI's Checks tab reads them: one execution per node, on its partition.
        [silent] = check_history(instance, "lip_sync", "not_silent", partition_key(result.run_id, "voice"))
        assert silent.partition == partition_key(result.run_id, "voice")
        assert silent.status == AssetCheckExecutionRecordStatus.FAILED
        evaluation = silent.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        [streams] = check_history(instance, "generate_video", "streams", partition_key(result.run_id, "scene"))
        assert streams.status == AssetCheckExecutionRecordStatus.SUCCEEDED

        # The deployment makes silence block: the node fails, naming the check, and records no video.
        monkeypatch.setenv("VIDEO_PIPELINES_BLOCKING_CHECKS", "streams,not_silent")
        blocked = run_plan_in_process({**plan, "cache": False}, instance)
        assert not blocked.success
        status = execution_status(records, None, blocked.run_id)
        assert status.nodes["voice"].state.value == "failed" and status.nodes["voice"].result is None
        assert status.error is not None
        assert "voice (lipSync) failed: blocking media check failed: not_silent: voice (lipSync) is silent" in (
            status.error
        )
        assert {check.name: check.blocking for check in status.nodes["voice"].checks}["not_silent"] is True
        failures = [event for event in blocked.all_events if event.event_type_value == "STEP_FAILURE"]
        assert len(failures) == 1  # not retried
        assert not [
            event
            for event in blocked.get_asset_materialization_events()
            if event.step_materialization_data.materialization.metadata["node_id"].value == "voice"
        ]
        # With sound, the same plan passes every check.
        plan["jobs"][1]["params"]["audioUrl"] = media_server.url("voice.mp3")
        good = run_plan_in_process(plan, instance)
        assert good.success
        good_wire = execution_status(records, None, good.run_id).to_wire()
        assert all(check["passed"] for check in good_wire["jobs"]["voice"]["checks"])
        # Another execution of it reuses both videos: checked where they were made, not again here.
        again = run_plan_in_process(plan, instance)
        again_wire = execution_status(records, None, again.run_id).to_wire()
        assert [(job["status"], job["checks"]) for job in again_wire["jobs"].values()] == [("reused", [])] * 2


def test_run_node_checks_the_video_before_storing_it(tmp_path: Path, media_server: MediaServer) -> None:
    """The job's path: the checks look at the file the node wrote (its probe reused), before the store."""
    ffmpeg("-f", "lavfi", "-t", "1", "-i", SILENCE, "-c:a", "libmp3lame", str(media_server.root / "mute.mp3"))
    store = LocalArtifactStore(tmp_path / "artifacts")
    env = NodeEnvironment(store=store)
    everything = frozenset(CheckName)
    scene = PlanNode("scene", Operation.GENERATE_VIDEO, {"prompt": "x", "duration": 1, "resolution": 90})
    made = run_node(scene, inputs=[], upstream={}, lineage="a" * 64, env=env, checks=NodeChecks(True, everything))
    assert [outcome.name for outcome in made.checks] == list(CheckName)
    assert all(outcome.passed and outcome.blocking for outcome in made.checks)
    assert run_node(scene, inputs=[], upstream={}, lineage="a" * 64, env=env).checks == []  # not asked for
    stored_before = sorted(path.name for path in (tmp_path / "artifacts").rglob("*") if path.is_file())

    voice = PlanNode("voice", Operation.LIP_SYNC, {"audioUrl": media_server.url("mute.mp3")}, depends_on=("scene",))
    with pytest.raises(MediaChecksFailed, match=r"not_silent: voice \(lipSync\) is silent") as failure:
        run_node(
            voice,
            inputs=[made.result],
            upstream={"scene": made.result},
            lineage="b" * 64,
            env=env,
            checks=NodeChecks(True, everything),
        )
    assert {outcome.name for outcome in failure.value.outcomes if not outcome.passed} == {CheckName.NOT_SILENT}
    # Nothing of the silent video reached the store.
    assert sorted(path.name for path in (tmp_path / "artifacts").rglob("*") if path.is_file()) == stored_before
