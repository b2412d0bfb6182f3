"""Remote speech-to-text: the Replicate and fal adapters' `transcribe` against servers on 127.0.0.1
that speak each protocol and answer Whisper's word-timestamped JSON."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from video_pipelines.errors import JobFailed, MediaError, ProviderError, ProviderHttpError, TransientProviderError
from video_pipelines.executions import execution_status
from video_pipelines.operations.ffmpeg import probe, probe_audio
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.providers import speech_transcriber
from video_pipelines.providers.base import NoLedger, TranscriptionRequest
from video_pipelines.providers.fal import FalProvider
from video_pipelines.providers.keyed import words_from_output
from video_pipelines.providers.pricing import DEFAULT_MODELS, PricingTable
from video_pipelines.providers.replicate import DEFAULT_SPEECH_MODEL, ReplicateProvider
from video_pipelines.speech import Word

from ..media import ffmpeg, frame_rgb, local_path_of
from ..unit.test_providers_replicate_fal import (
    FAST,
    LOOPBACK,
    POLL,
    TOKEN,
    FakeApi,
    FakeFal,
    FakeReplicate,
    RecordingLedger,
    serving_replicate,
    whisper_chunks,
)
from .harness import run_plan_in_process

REPLICATE_VERSION = DEFAULT_SPEECH_MODEL.partition(":")[2]
EXPECTED = [Word(0.0, 0.42, "Guten"), Word(0.42, 0.9, "Morgen,"), Word(1.1, 1.5, "Welt.")]


@dataclass
class Speech:
    name: str
    api: FakeApi
    make: Callable[..., Any]

    def job_id(self, request: str) -> str:
        """The id a ledger keeps for the provider's request `request` (fal's carries the Whisper app)."""
        return f"fal-ai/whisper/{request}" if self.name == "fal" else request

    def created_input(self) -> dict[str, Any]:
        (create,) = self.api.seen("create")
        body: dict[str, Any] = create.body["input"] if self.name == "replicate" else create.body
        return body

    def audio_sent(self) -> str:
        return str(self.created_input()["audio" if self.name == "replicate" else "audio_url"])


@pytest.fixture(params=["replicate", "fal"])
def speech(request: pytest.FixtureRequest, clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Speech]:
    if request.param == "replicate":
        api: FakeApi = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1).start()
        provider: type[ReplicateProvider | FalProvider] = ReplicateProvider
    else:
        api = FakeFal(auth=f"Key {TOKEN}", output=clip, polls_to_finish=1).start()
        monkeypatch.setenv("FAL_STORAGE_BASE_URL", api.base_url)
        provider = FalProvider

    def make(token: str = TOKEN, **kwargs: Any) -> Any:
        kwargs.setdefault("http", FAST)
        return provider(token, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, **kwargs)

    try:
        yield Speech(request.param, api, make)
    finally:
        api.stop()


@pytest.fixture
def video(tmp_path: Path, clip: bytes) -> Path:
    """A real 1 s MP4 with an audio track, as the node's input."""
    path = tmp_path / "input0.mp4"
    path.write_bytes(clip)
    return path


def local_request(video: Path, language: str = "de", model: str | None = None) -> TranscriptionRequest:
    return TranscriptionRequest(media=video, media_url=video.as_uri(), language=language, model=model)


# ---- the happy paths ----


def test_transcribe_returns_the_words_and_times_the_model_gave(speech: Speech, video: Path) -> None:
    words = speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())

    assert words == EXPECTED
    api_calls = [request for request in speech.api.requests if request.kind != "file"]
    expected_auth = f"Bearer {TOKEN}" if speech.name == "replicate" else f"Key {TOKEN}"
    assert {request.headers["Authorization"] for request in api_calls} == {expected_auth}
    assert not speech.api.seen("cancel")


def test_the_default_model_gets_its_documented_inputs(speech: Speech, video: Path) -> None:
    speech.make().transcribe(local_request(video, language="de-AT"), timeout=30, ledger=NoLedger())

    (create,) = speech.api.seen("create")
    sent = dict(speech.created_input())
    audio = sent.pop("audio" if speech.name == "replicate" else "audio_url")
    assert audio.startswith("data:audio/mpeg;base64,")
    if speech.name == "replicate":
        # A community model: pinned to its version, the language by Whisper's name for it.
        assert create.path == "/v1/predictions"
        assert create.body["version"] == REPLICATE_VERSION
        assert sent == {"task": "transcribe", "language": "german", "timestamp": "word", "batch_size": 24}
    else:
        assert create.path == "/fal-ai/whisper"
        assert sent == {"task": "transcribe", "language": "de", "chunk_level": "word", "version": "3"}
        job_id = next(iter(speech.api.jobs))
        assert [request.path for request in speech.api.seen("result")] == [f"/fal-ai/whisper/requests/{job_id}"]


def test_a_local_video_travels_as_its_speech_track_small_and_mono(speech: Speech, video: Path, tmp_path: Path) -> None:
    speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())

    mp3 = tmp_path / "sent.mp3"
    mp3.write_bytes(base64.b64decode(speech.audio_sent().split(",", 1)[1]))
    assert probe_audio(mp3) == pytest.approx(1.0, abs=0.1)
    assert mp3.stat().st_size < video.stat().st_size
    assert mp3.stat().st_size < 8 * 1024  # 32 kbit/s: about 4 KB a second of speech


def test_an_http_media_url_is_sent_as_is(speech: Speech, tmp_path: Path) -> None:
    stored = "https://bucket.s3.example.com/exec/job1.mp4?X-Amz-Signature=abc"
    # The provider reads the stored video itself: nothing is extracted here (the file need not exist).
    request = TranscriptionRequest(media=tmp_path / "absent.mp4", media_url=stored, language="fr", model=None)
    speech.make().transcribe(request, timeout=30, ledger=NoLedger())
    assert speech.audio_sent() == stored


def test_a_model_the_node_names_is_used(speech: Speech, video: Path) -> None:
    model = "acme/whisperx" if speech.name == "replicate" else "fal-ai/wizper"
    speech.make().transcribe(local_request(video, model=model), timeout=30, ledger=NoLedger())

    (create,) = speech.api.seen("create")
    if speech.name == "replicate":
        assert create.path == "/v1/models/acme/whisperx/predictions"
        sent = speech.created_input()
        assert (sent["language"], sent["word_timestamps"]) == ("de", True)  # the common inputs
    else:
        assert create.path == "/fal-ai/wizper"


def test_a_null_end_takes_the_next_start_and_the_last_word_a_default_length(speech: Speech, video: Path) -> None:
    speech.api.words = [(0.2, None, "Hallo"), (0.8, None, "zusammen")]
    words = speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())
    assert words == [Word(0.2, 0.8, "Hallo"), Word(0.8, 1.2, "zusammen")]


def test_segment_timestamps_are_split_evenly_into_words(speech: Speech, video: Path) -> None:
    speech.api.transcript = {
        "text": "Guten Morgen liebe Welt",
        "chunks": [
            {"timestamp": [1.0, 2.0], "text": " Guten Morgen"},
            {"timestamp": [2.0, 2.4], "text": " liebe Welt"},
        ],
    }
    words = speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())
    assert words == [Word(1.0, 1.5, "Guten"), Word(1.5, 2.0, "Morgen"), Word(2.0, 2.2, "liebe"), Word(2.2, 2.4, "Welt")]


def test_silence_is_no_words(speech: Speech, video: Path) -> None:
    speech.api.transcript = {"text": "", "chunks": []}
    assert speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger()) == []


def test_text_without_timestamps_is_refused(speech: Speech, video: Path) -> None:
    speech.api.transcript = {"text": "Guten Morgen"}
    with pytest.raises(ProviderError, match="gave no timestamps"):
        speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())


# ---- refusals, failures, cancel and the ledger ----


def test_a_wrong_token_fails_with_the_provider_message_and_never_the_token(speech: Speech, video: Path) -> None:
    wrong = "wrong-Token-77c2"
    with pytest.raises(ProviderHttpError) as caught:
        speech.make(token=wrong).transcribe(local_request(video), timeout=30, ledger=NoLedger())
    message = str(caught.value)
    assert caught.value.status_code == 401
    assert wrong not in message and TOKEN not in message
    assert len(speech.api.requests) == 1


def test_5xx_every_time_is_transient_and_never_shows_the_token(speech: Speech, video: Path) -> None:
    speech.api.script["create"] = [(503, {}, {"detail": f"overloaded, token {TOKEN}"})] * 3
    with pytest.raises(TransientProviderError, match="after 3 attempts") as caught:
        speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())
    assert TOKEN not in str(caught.value)


def test_a_failed_job_is_a_clear_provider_error(speech: Speech, video: Path) -> None:
    speech.api.outcome = "fail"
    expected = "CUDA out of memory" if speech.name == "replicate" else "flagged by the content checker"
    with pytest.raises(ProviderError, match=expected) as caught:
        speech.make().transcribe(local_request(video), timeout=30, ledger=NoLedger())
    assert not isinstance(caught.value, TransientProviderError)
    assert "job-1" in str(caught.value)
    assert not speech.api.seen("cancel")
    if speech.name == "replicate":
        assert isinstance(caught.value, JobFailed)


def test_a_job_past_the_timeout_is_canceled(speech: Speech, video: Path) -> None:
    speech.api.outcome = "never"
    # 1.5 s, not less: the timeout also bounds FFmpeg's speech extraction, which took over 0.3 s on a loaded machine.
    with pytest.raises(ProviderError, match=rf"job {speech.job_id('job-1')} did not finish within 1\.5 s; canceled"):
        speech.make().transcribe(local_request(video), timeout=1.5, ledger=NoLedger())
    (cancel,) = speech.api.seen("cancel")
    assert "job-1" in cancel.path
    assert speech.api.jobs["job-1"].canceled


def test_the_ledger_learns_the_job_before_the_first_poll(speech: Speech, video: Path) -> None:
    ledger = RecordingLedger(speech.api)
    speech.make().transcribe(local_request(video), timeout=30, ledger=ledger)
    assert ledger.job_id == speech.job_id("job-1")
    assert ledger.polls_before_remember == 0


def test_a_remembered_job_is_resumed_not_created_again(speech: Speech, tmp_path: Path) -> None:
    if speech.name == "replicate":
        job = speech.api.new_job(model=REPLICATE_VERSION)
    else:
        job = speech.api.new_job(app="fal-ai/whisper", model="fal-ai/whisper")
    job.polls = 1  # the attempt that failed had polled it once
    # The retried step neither pays twice nor extracts the audio again (the video is gone).
    request = local_request(tmp_path / "gone.mp4")
    words = speech.make().transcribe(request, timeout=30, ledger=RecordingLedger(speech.api, job.id))

    assert words == EXPECTED
    assert not speech.api.seen("create")
    assert speech.api.seen("status")
    assert all(job.id in request.path for request in speech.api.seen("status"))


def test_a_video_without_audio_fails_before_any_call(speech: Speech, tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=160x90:d=1", "-c:v", "libx264", "-an", str(silent))
    with pytest.raises(MediaError, match="has no audio track"):
        speech.make().transcribe(local_request(silent), timeout=30, ledger=NoLedger())
    assert not speech.api.requests


def test_speech_over_the_inline_limit_is_uploaded_to_the_providers_storage(
    speech: Speech, video: Path, tmp_path: Path
) -> None:
    words = speech.make(max_inline_bytes=512).transcribe(local_request(video), timeout=30, ledger=NoLedger())
    assert [word.text for word in words] == ["Guten", "Morgen,", "Welt."]
    [upload] = speech.api.seen("upload")
    (create,) = speech.api.seen("create")
    if speech.name == "replicate":
        assert (upload.body["filename"], upload.body["content_type"]) == ("speech.mp3", "audio/mpeg")
        content = upload.body["content"]
        assert create.body["input"]["audio"] == "https://api.replicate.com/v1/files/file-1"
    else:
        assert upload.body == {"file_name": "speech.mp3", "content_type": "audio/mpeg"}
        [content] = speech.api.stored.values()
        assert create.body["audio_url"] == "https://v3.fal.media/files/f1/speech.mp3"
    uploaded = tmp_path / "uploaded.mp3"
    uploaded.write_bytes(content)  # the extracted speech track, as the model would read it
    assert len(content) > 512 and abs(probe_audio(uploaded) - probe(video).duration) < 0.2


def test_replicate_refuses_a_language_whisper_does_not_know(video: Path) -> None:
    # Before any call: the default model takes Whisper's language names, and 'xx' has none.
    provider = ReplicateProvider(TOKEN, base_url="http://127.0.0.1:9", allowed=LOOPBACK, http=FAST)
    with pytest.raises(ProviderError, match=r"'xx'.*ISO 639-1"):
        provider.transcribe(local_request(video, language="xx"), timeout=30, ledger=NoLedger())


# ---- configured from the environment, as a node gets it ----


def test_speech_transcriber_configures_replicate_from_the_environment(
    clip: bytes, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1)
    with serving_replicate(fake, monkeypatch) as api:
        transcriber = speech_transcriber("replicate")
        transcriber.http = FAST  # type: ignore[attr-defined]
        transcriber.poll_interval = POLL  # type: ignore[attr-defined]
        assert transcriber.transcribe(local_request(video), timeout=30, ledger=NoLedger()) == EXPECTED
    assert api.seen("create")[0].body["version"] == REPLICATE_VERSION
    assert DEFAULT_MODELS[("addSubtitles", "replicate")] == DEFAULT_SPEECH_MODEL


def test_the_fal_resource_configures_the_speech_model(
    clip: bytes, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from video_pipelines.net import AllowedHosts
    from video_pipelines.orchestration.resources.artifacts import FalResource

    api = FakeFal(auth=f"Key {TOKEN}", output=clip, polls_to_finish=1).start()
    try:
        monkeypatch.setenv("FAL_KEY", TOKEN)
        resource = FalResource(base_url=api.base_url, speech_model="fal-ai/wizper", poll_interval_seconds=POLL)
        transcriber = resource.factory()(AllowedHosts.from_env())
        assert transcriber.speech_model == "fal-ai/wizper"  # type: ignore[union-attr]
        transcriber.http = FAST  # type: ignore[union-attr]
        transcriber.allowed = LOOPBACK  # type: ignore[union-attr]
        transcriber.transcribe(local_request(video), timeout=30, ledger=NoLedger())  # type: ignore[union-attr]
        assert "fal-ai/wizper" in api.seen("create")[0].path
    finally:
        api.stop()


# ---- the output shapes, directly ----


def test_segments_with_words_use_the_words_and_keep_an_untimed_one_inside_its_segment() -> None:
    output = {
        "segments": [
            {
                "start": 0.5,
                "end": 2.0,
                "text": " Es ist 10 Uhr",
                "words": [
                    {"word": "Es", "start": 0.5, "end": 0.7},
                    {"word": "ist", "start": 0.7, "end": 0.9},
                    {"word": "10"},  # WhisperX aligns no numerals
                    {"word": "Uhr", "start": 1.6, "end": 2.0},
                ],
            },
            {"start": 3.0, "end": 4.0, "text": " Tschüss dann"},  # a segment without words
        ]
    }
    assert words_from_output(output, where="test") == [
        Word(0.5, 0.7, "Es"),
        Word(0.7, 0.9, "ist"),
        Word(0.9, 1.6, "10"),
        Word(1.6, 2.0, "Uhr"),
        Word(3.0, 3.5, "Tschüss"),
        Word(3.5, 4.0, "dann"),
    ]


def test_flat_words_and_bare_chunk_lists_are_read() -> None:
    assert words_from_output({"words": [{"text": "Hi", "start": 0, "end": 0.3}]}, where="t") == [Word(0, 0.3, "Hi")]
    assert words_from_output([{"timestamp": (1, 1.25), "text": "Yo"}], where="t") == [Word(1, 1.25, "Yo")]


def test_garbage_times_fall_back_instead_of_failing() -> None:
    output = {"chunks": [{"timestamp": [-1, "x"], "text": " a"}, {"timestamp": [0.5, 0.2], "text": " b"}]}
    assert words_from_output(output, where="t") == [Word(0.0, 0.5, "a"), Word(0.5, 0.5, "b")]


def test_a_window_clock_that_restarts_continues_from_the_previous_word() -> None:
    # Long-form chunked Whisper output in some versions restarts each 30 s window at 0.
    output = whisper_chunks([(28.9, 29.5, "eins"), (29.5, 29.9, "zwei"), (0.1, 0.6, "drei"), (0.6, 1.0, "vier")])
    assert words_from_output(output, where="t") == [
        Word(28.9, 29.5, "eins"),
        Word(29.5, 29.9, "zwei"),
        Word(29.9, 30.4, "drei"),
        Word(30.4, 30.8, "vier"),
    ]


def test_a_word_stretched_over_a_pause_is_cut() -> None:
    output = whisper_chunks([(40.8, 41.0, "by"), (42.02, 69.98, "claws--"), (69.98, 70.3, "Oh,")])
    assert words_from_output(output, where="t")[1] == Word(42.02, 45.02, "claws--")


def test_an_unknown_shape_names_its_keys() -> None:
    with pytest.raises(ProviderError, match=r"replicate prediction p1 \(m\) gave no timestamps \(keys: \['srt'\]\)"):
        words_from_output({"srt": "1\n00:00:00,000 --> ..."}, where="replicate prediction p1 (m)")


# ---- through execute_plan ----


@contextmanager
def serving_fal(api: FakeFal, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFal]:
    """`api` started on 127.0.0.1 and this process's fal adapter pointed at it; stopped afterwards."""
    api.start()
    monkeypatch.setenv("FAL_KEY", TOKEN)
    monkeypatch.setenv("FAL_QUEUE_BASE_URL", api.base_url)
    monkeypatch.setenv("FAL_STORAGE_BASE_URL", api.base_url)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    try:
        yield api
    finally:
        api.stop()


@pytest.mark.parametrize("provider", ["replicate", "fal"])
def test_captions_of_german_speech_transcribed_by_a_provider(
    provider: str, dagster_home: Path, clip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "ein Fuchs", "duration": 2}},
            {
                "id": "subs",
                "type": "addSubtitles",
                "params": {"language": "de", "provider": provider},
                "dependsOn": ["gen"],
            },
        ]
    }
    serving: AbstractContextManager[FakeApi] = (
        serving_replicate(FakeReplicate(auth=f"Bearer {TOKEN}", output=clip, polls_to_finish=1), monkeypatch)
        if provider == "replicate"
        else serving_fal(FakeFal(auth=f"Key {TOKEN}", output=clip, polls_to_finish=1), monkeypatch)
    )
    model = DEFAULT_MODELS[("addSubtitles", provider)]
    with serving as api, dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
        assert result.success
        status = execution_status(DagsterRunRecords(instance), None, result.run_id).to_wire()
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        logs = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))

    gen, subs = status["jobs"]["gen"], status["jobs"]["subs"]
    assert subs["status"] == "completed"
    # The German speech went to the Whisper model, as the speech track of the local clip.
    [create] = api.seen("create")
    if provider == "replicate":
        assert create.body["version"] == REPLICATE_VERSION
        assert create.body["input"]["language"] == "german"
        assert create.body["input"]["audio"].startswith("data:audio/mpeg;base64,")
    else:
        assert create.path == "/fal-ai/whisper"
        assert create.body["language"] == "de"
        assert create.body["audio_url"].startswith("data:audio/mpeg;base64,")
    prefix = "fal-ai/whisper/" if provider == "fal" else ""
    assert run.tags["video/provider_job/subs"] == prefix + next(iter(api.jobs))
    # Billed: the default model's price for the video's seconds of speech.
    expected = PricingTable().cost(provider, model, subs["result"]["duration"])
    assert subs["cost"] == expected > 0 and status["cost"] == expected and gen["cost"] == 0.0
    # Burned into the picture, and beside it as SubRip and WebVTT.
    video = local_path_of(subs["result"]["url"])
    assert probe(video).duration == pytest.approx(2.0, abs=0.1)
    assert frame_rgb(video, 0.5) != frame_rgb(local_path_of(gen["result"]["url"]), 0.5)
    srt = local_path_of(subs["result"]["captions"]["srt"]).read_text(encoding="utf-8")
    assert "00:00:00,000 -->" in srt and "Guten Morgen" in srt and "Welt." in srt
    assert "Guten Morgen" in local_path_of(subs["result"]["captions"]["vtt"]).read_text(encoding="utf-8")
    materialization = next(
        event.step_materialization_data.materialization
        for event in result.get_asset_materialization_events()
        if event.step_materialization_data.materialization.metadata["node_id"].value == "subs"
    )
    assert materialization.metadata["provider"].value == provider
    assert materialization.metadata["model"].value == model
    assert TOKEN not in json.dumps(run.run_config) + json.dumps(dict(run.tags)) + logs
