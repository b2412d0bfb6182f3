"""Captions: cues from speech, karaoke, SRT/WebVTT sidecars and soft subtitle tracks (issue 13).

The pure parts (cue building, the sidecar writers, the karaoke script, params) directly; then real
media: real speech made by a real TTS, transcribed by the offline recogniser, through run_node
and through the execute_plan job.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from video_pipelines.errors import MediaError, PlanValidationError, StorageError
from video_pipelines.nodes.runner import NodeEnvironment, NodeRun, run_node
from video_pipelines.operations import Cue, build_ass, ffmpeg_exe, generate_clip, parse_srt, probe, to_srt, to_webvtt
from video_pipelines.operations.subtitles import track_language
from video_pipelines.plan import parse_plan
from video_pipelines.plan.lineage import lineage_hashes
from video_pipelines.plan.model import PlanNode
from video_pipelines.plan.params import Operation
from video_pipelines.plan.results import Captions, VideoResult, aspect_ratio_name
from video_pipelines.providers import JobLedger, TranscriptionRequest
from video_pipelines.providers.pricing import Price, PricingTable
from video_pipelines.speech import Word
from video_pipelines.speech.cues import MAX_LINE_CHARS, cues_from_words, sentences
from video_pipelines.storage import LocalArtifactStore, file_sha256

from ..media import ffmpeg, frame_rgb, local_path_of
from ..speech import require_engine, speak

SENTENCE = "Today we show you how the new camera works in the city at night"


def words(*spec: tuple[float, float, str]) -> list[Word]:
    return [Word(start, end, text) for start, end, text in spec]


def subtitles_node(params: dict[str, Any]) -> PlanNode:
    return PlanNode("subs", Operation.ADD_SUBTITLES, params, ("clip",))


def plan_problems(params: dict[str, Any]) -> list[str]:
    plan = {
        "jobs": [
            {"id": "clip", "type": "generateVideo", "params": {"prompt": "x"}},
            {"id": "subs", "type": "addSubtitles", "params": params, "dependsOn": ["clip"]},
        ]
    }
    try:
        parse_plan(plan)
    except PlanValidationError as exc:
        return list(exc.problems)
    return []


# ---------------------------------------------------------------- cues from words


def test_cues_break_at_pauses_and_sentence_ends_and_keep_their_words() -> None:
    cues = cues_from_words(
        words(
            (0.0, 0.3, "hello"),
            (0.3, 0.7, "there."),
            (0.8, 1.0, "how"),
            (1.0, 1.2, "are"),
            (1.2, 1.5, "you"),
            (2.5, 2.8, "fine"),
        )
    )
    assert [cue.text for cue in cues] == ["Hello there.", "How are you.", "Fine."]
    assert [(cue.start, cue.end) for cue in cues] == [(0.0, 0.8), (0.8, 1.6), (2.5, 3.3)]  # >= 0.8 s, no overlap
    assert [word.text for word in cues[1].words] == ["How", "are", "you."]
    assert cues[1].words[1] == Word(1.0, 1.2, "are")


def test_cues_hold_two_lines_of_42_characters_and_six_seconds_at_most() -> None:
    stream = [Word(i * 0.3, i * 0.3 + 0.25, f"word{i:02d}") for i in range(60)]
    cues = cues_from_words(stream)
    assert [word.text.lower().rstrip(".") for cue in cues for word in cue.words] == [w.text for w in stream]
    assert [cue.text[:6] for cue in cues][:2] == ["Word00", "word" + cues[1].text[4:6]]  # one sentence
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= MAX_LINE_CHARS for line in lines), cue.text
        assert cue.end - cue.start <= 6.0 + 1e-9
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    two = next(cue for cue in cues if "\n" in cue.text)
    first, second = two.text.split("\n")
    assert abs(len(first) - len(second)) <= len("word00 ")  # balanced, not greedy


# The local recogniser's words and times for festival's HTS voice saying "Today we show you how the new camera
# works. It sees well at night. I think you will like it, and so will your friends."
FESTIVAL = words(
    (0.15, 0.47, "today"), (0.47, 0.64, "we"), (0.64, 0.90, "show"), (0.90, 1.08, "you"), (1.08, 1.32, "how"),
    (1.32, 1.40, "the"), (1.40, 1.58, "new"), (1.58, 2.03, "camera"), (2.03, 2.53, "works"),
    (2.67, 2.89, "it"), (2.89, 3.11, "sees"), (3.11, 3.35, "well"), (3.35, 3.47, "at"), (3.47, 3.76, "night"),
    (4.06, 4.17, "i"), (4.17, 4.47, "think"), (4.47, 4.61, "you"), (4.61, 4.76, "will"), (4.76, 5.00, "like"),
    (5.00, 5.20, "it"), (5.24, 5.42, "and"), (5.42, 5.68, "so"), (5.68, 5.85, "will"), (5.85, 6.06, "your"),
    (6.06, 6.65, "friends"),
)  # fmt: skip


def test_sentences_end_with_a_full_stop_at_pauses_and_start_in_upper_case() -> None:
    shown = sentences(FESTIVAL, "en-US")
    assert " ".join(word.text for word in shown) == (
        "Today we show you how the new camera works. It sees well at night. "
        "I think you will like it and so will your friends."
    )
    # The words stay as heard, with their times.
    assert [(w.start, w.end, w.text.lower().rstrip(".")) for w in shown] == [(w.start, w.end, w.text) for w in FESTIVAL]
    assert [cue.text.replace("\n", " ") for cue in cues_from_words(FESTIVAL, "en")] == [
        "Today we show you how the new camera works.",
        "It sees well at night.",
        "I think you will like it and so will your friends.",
    ]


@pytest.mark.parametrize(
    ("spoken", "language", "expected"),
    [
        # A comma before a pause becomes the stop; an English closing quote stays after it, a guillemet before.
        ([(0.0, 0.4, "well,"), (0.4, 0.8, "said"), (0.8, 1.2, '"hello"')], "en", 'Well, said "hello."'),
        ([(0.0, 0.4, "wait,"), (1.2, 1.4, "no")], None, "Wait. No."),
        # A transcriber that punctuates keeps its sentences: no stop at its pauses, only after the last word.
        ([(0.0, 0.5, "Hello,"), (1.0, 1.5, "world"), (1.6, 2.0, "again")], "en", "Hello, world again."),
        # English "I" and its contractions; not the Italian article.
        ([(0.0, 0.2, "so"), (0.2, 0.4, "i'm"), (0.4, 0.6, "sure"), (0.6, 0.8, "i")], "en", "So I'm sure I."),
        ([(0.0, 0.2, "vedo"), (0.2, 0.4, "i"), (0.4, 0.6, "ragazzi")], "it", "Vedo i ragazzi."),
        # Numbers and CJK text: nothing to capitalise, a CJK full stop.
        ([(0.0, 0.3, "3"), (0.3, 0.6, "cats"), (1.0, 1.3, "日本語")], "ja", "3 cats. 日本語。"),
        ([(0.0, 0.3, "  "), (0.3, 0.6, "¿qué?"), (1.0, 1.3, "«sí»")], "es", "¿Qué? «Sí»."),
    ],
)
def test_sentence_marks_and_case(spoken: list[tuple[float, float, str]], language: str | None, expected: str) -> None:
    assert " ".join(word.text for word in sentences(words(*spoken), language)) == expected


def test_a_short_cue_stays_0_8_s_but_never_into_the_next() -> None:
    cues = cues_from_words(words((1.0, 1.2, "yes."), (1.5, 1.9, "no.")))
    assert (cues[0].start, cues[0].end) == (1.0, 1.5)
    assert (cues[1].start, cues[1].end) == (1.5, 2.3)


# ---------------------------------------------------------------- sidecars


def test_srt_and_webvtt_have_their_timestamps_headers_and_escapes() -> None:
    cues = [Cue(0.0, 1.5, "Hello --> there"), Cue(3661.25, 3662.0, "a < b & c\n\nsecond line")]
    srt = to_srt(cues)
    assert srt.startswith(
        "1\n00:00:00,000 --> 00:00:01,500\nHello --\u2060> there\n\n2\n01:01:01,250 --> 01:01:02,000\n"
    )
    assert "a < b & c\nsecond line\n" in srt  # no blank line inside a cue
    assert [(cue.start, cue.end) for cue in parse_srt(srt)] == [(0.0, 1.5), (3661.25, 3662.0)]
    vtt = to_webvtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello --&gt; there\n\n")
    assert "01:01:01.250 --> 01:01:02.000\na &lt; b &amp; c\nsecond line\n" in vtt
    assert vtt.count("-->") == 2


def test_sidecars_hold_no_control_characters() -> None:
    cues = [Cue(0.0, 1.0, "nul\x00 bel\x07 esc\x1b tab\t del\x7f\r\nnext")]
    for sidecar in (to_srt(cues), to_webvtt(cues)):
        assert not [ch for ch in sidecar if ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F)], repr(sidecar)
        assert "nul  bel  esc  tab  del \nnext\n" in sidecar


def test_track_language_is_iso_639_2() -> None:
    assert [track_language(code) for code in ("en", "en-US", "fr", "deu", "xx", None)] == [
        "eng", "eng", "fra", "deu", "und", "und"
    ]  # fmt: skip


# ---------------------------------------------------------------- karaoke


def test_karaoke_tags_each_word_with_its_centiseconds() -> None:
    cue = cues_from_words(words((0.5, 0.9, "hello"), (1.0, 1.4, "{\\b1}brave"), (1.4, 2.0, "world")))[0]
    script = build_ass([cue], width=320, height=180, highlight="word")
    dialogue = script.splitlines()[-1]
    assert dialogue.endswith(",{\\k50}Hello {\\k40}\\{\\" + "\u2060" + "b1\\}brave {\\k60}world."), dialogue
    assert "&H0000FFFF,&H00FFFFFF" in script  # spoken words yellow, the ones to come white
    assert "{\\k" not in build_ass([cue], width=320, height=180).splitlines()[-1]


def test_karaoke_of_text_without_timings_spreads_the_cue_over_its_words() -> None:
    script = build_ass([Cue(0.0, 2.0, "aaa bbbbbbb\ncc")], width=320, height=180, highlight="word")
    ticks = [int(n) for n in re.findall(r"\\k(\d+)", script)]
    assert sum(ticks) == 200 and ticks[1] > ticks[0] > ticks[2]
    assert "\\N" in script.splitlines()[-1]


# ---------------------------------------------------------------- params and plans


def test_speech_params_are_validated_naming_the_node_and_field() -> None:
    assert plan_problems({"language": "en"}) == []
    assert plan_problems({"language": "en-US", "style": {"highlight": "word"}}) == []
    assert plan_problems({"text": "Bonjour", "language": "fr"}) == []  # a language tag, nothing transcribed
    assert plan_problems({"language": "fr", "provider": "fal", "model": "fal-ai/whisper"}) == []
    [french] = plan_problems({"language": "fr"})
    assert french.startswith("subs.params.language: the local recogniser transcribes en only")
    assert "replicate or fal" in french
    [provider] = plan_problems({"text": "hi", "provider": "replicate"})
    assert provider.startswith("subs.params.provider: ") and "'text'" in provider
    [model] = plan_problems({"srt": "1\n00:00:00,000 --> 00:00:01,000\nx\n", "model": "m"})
    assert model.startswith("subs.params.model: ")
    [neither] = plan_problems({})
    assert neither.startswith("subs.params: give exactly one of 'text', 'cues' or 'srt', or only 'language'")
    [karaoke] = plan_problems({"language": "en", "burn": False, "style": {"highlight": "word"}})
    assert karaoke.startswith("subs.params.style: highlight 'word'")


def test_speech_on_a_provider_is_a_remote_node_and_every_choice_changes_the_lineage() -> None:
    assert subtitles_node({"language": "fr", "provider": "replicate"}).is_remote
    assert not subtitles_node({"language": "en"}).is_remote
    assert not subtitles_node({"text": "hi"}).is_remote
    variants = [
        {"language": "en"},
        {"language": "en", "burn": False},
        {"language": "en", "style": {"highlight": "word"}},
        {"language": "en", "provider": "fal"},
        {"language": "en", "provider": "fal", "model": "other"},
        {"language": "en-GB"},
    ]
    lineages = set()
    for params in variants:
        plan = parse_plan(
            {
                "jobs": [
                    {"id": "clip", "type": "generateVideo", "params": {"prompt": "x"}},
                    {"id": "subs", "type": "addSubtitles", "params": params, "dependsOn": ["clip"]},
                ]
            }
        )
        lineages.add(lineage_hashes(plan)["subs"])
    assert len(lineages) == len(variants)


def test_captions_travel_on_the_wire_only_when_present() -> None:
    plain = VideoResult("file:///v.mp4", 1.0, 2, 2, "1:1", 1, "0" * 64)
    assert "captions" not in plain.to_wire() and VideoResult.from_wire(plain.to_wire()) == plain
    captioned = VideoResult("file:///v.mp4", 1.0, 2, 2, "1:1", 1, "0" * 64, captions=Captions("s.srt", "s.vtt"))
    assert captioned.to_wire()["captions"] == {"srt": "s.srt", "vtt": "s.vtt"}
    assert VideoResult.from_wire(captioned.to_wire()) == captioned


# ---------------------------------------------------------------- real media through run_node


def stored_input(store: LocalArtifactStore, path: Path) -> VideoResult:
    info = probe(path)
    stored = store.put_file(path, sha256=file_sha256(path))
    return VideoResult(
        stored.url, info.duration, info.width, info.height, aspect_ratio_name(info.width, info.height),
        info.size_bytes, file_sha256(path),
    )  # fmt: skip


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 320x180 clip whose audio is SENTENCE spoken by festival's HTS voice."""
    require_engine("festival-hts")
    folder = tmp_path_factory.mktemp("spoken")
    voice = speak(SENTENCE, folder / "voice.wav")
    generate_clip(folder / "clip.mp4", prompt="speech", width=320, height=180, duration=4, seed=5)
    ffmpeg(
        "-i", str(folder / "clip.mp4"), "-i", str(voice), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
        "-c:a", "aac", "-ar", "48000", "-ac", "2", "-af", "apad", "-t", "4", str(folder / "spoken.mp4"),
    )  # fmt: skip
    return folder / "spoken.mp4"


def run_subtitles(params: dict[str, Any], clip: Path, store: LocalArtifactStore, **env: Any) -> NodeRun:
    return run_node(
        subtitles_node(params),
        inputs=[stored_input(store, clip)],
        upstream={},
        lineage="1" * 64,
        env=NodeEnvironment(store=store, **env),
    )


def stream_lines(path: Path) -> list[str]:
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False)
    return [line.strip() for line in done.stderr.splitlines() if "Stream #" in line]


def video_packets(path: Path) -> list[str]:
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-f", "framecrc", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [",".join(line.split(",")[4:6]) for line in done.stdout.splitlines() if not line.startswith("#")]


def test_karaoke_from_speech_is_burned_and_turns_words_yellow(spoken_clip: Path, tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    karaoke = run_subtitles({"language": "en", "style": {"fontSize": 22, "highlight": "word"}}, spoken_clip, store)
    assert karaoke.provider == "local" and karaoke.cost_usd == 0.0 and karaoke.model is None
    assert karaoke.result.captions is not None
    [cue] = parse_srt(local_path_of(karaoke.result.captions.srt).read_text())
    # The same caption without the highlight, its cue given: the speech is transcribed once (seconds of the suite).
    given = {"start": cue.start, "end": cue.end, "text": cue.text}
    plain = run_subtitles({"cues": [given], "language": "en", "style": {"fontSize": 22}}, spoken_clip, store)
    assert plain.result.sha256 != karaoke.result.sha256
    # As its last word is spoken every word is drawn in the primary colour: yellow, not white.
    at = cue.end - 0.1
    rows = range(320 * 3 * 120, 320 * 3 * 180, 3)
    karaoke_frame, plain_frame = (
        frame_rgb(local_path_of(karaoke.result.url), at),
        frame_rgb(local_path_of(plain.result.url), at),
    )
    yellow = sum(1 for i in rows if karaoke_frame[i] > 180 and karaoke_frame[i + 1] > 180 and karaoke_frame[i + 2] < 90)
    white = sum(1 for i in rows if min(plain_frame[i : i + 3]) > 200)
    assert yellow > 100 and white > 100, (yellow, white)
    assert (
        sum(1 for i in rows if plain_frame[i] > 180 and plain_frame[i + 1] > 180 and plain_frame[i + 2] < 90)
        < yellow / 5
    )


def test_burn_false_adds_a_track_and_leaves_the_picture_alone(spoken_clip: Path, tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    run = run_subtitles({"cues": [{"start": 0.5, "end": 2, "text": "Soft & sound"}], "burn": False, "language": "en"},
                        spoken_clip, store)  # fmt: skip
    out = local_path_of(run.result.url)
    assert video_packets(out) == video_packets(spoken_clip)
    assert any("Subtitle: mov_text" in line and "(eng)" in line for line in stream_lines(out))
    info = probe(out)
    assert (info.width, info.height, info.audio_codec) == (320, 180, "aac") and abs(info.duration - 4) < 0.1
    assert run.result.captions is not None and run.provider is None
    assert (
        local_path_of(run.result.captions.vtt).read_text()
        == "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nSoft &amp; sound\n"
    )
    assert local_path_of(run.result.captions.srt).name == f"{run.result.sha256}.srt"


def test_silence_is_no_speech_and_says_so(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    generate_clip(tmp_path / "tone.mp4", prompt="quiet", width=160, height=90, duration=2, seed=1)
    ffmpeg("-i", str(tmp_path / "tone.mp4"), "-af", "volume=0", "-c:v", "copy", str(tmp_path / "silent.mp4"))
    with pytest.raises(
        MediaError, match=r"subs: no speech recognised in its input video \(language 'en', provider local\)"
    ):
        run_subtitles({"language": "en"}, tmp_path / "silent.mp4", store)


class _Transcriber:
    """A speech-to-text provider as the adapters present it, answering fixed words."""

    name = "replicate"

    def __init__(self) -> None:
        self.requests: list[TranscriptionRequest] = []

    def transcribe(self, request: TranscriptionRequest, *, timeout: float | None, ledger: JobLedger) -> list[Word]:
        self.requests.append(request)
        return words((0.2, 0.6, "bonjour"), (0.7, 1.2, "à"), (1.2, 1.6, "tous"))


def test_a_remote_transcriber_is_called_with_the_input_and_its_model_is_priced(
    spoken_clip: Path, tmp_path: Path
) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    transcriber = _Transcriber()
    pricing = PricingTable({"replicate": {"openai/whisper": Price(per_second=0.01)}})
    run = run_subtitles(
        {"language": "fr", "provider": "replicate", "model": "openai/whisper"},
        spoken_clip,
        store,
        remote={"replicate": lambda allowed: transcriber},
        pricing=pricing,
    )
    [request] = transcriber.requests
    assert request.language == "fr" and request.model == "openai/whisper" and request.media.is_file()
    assert request.media_url.startswith("file://")
    assert (run.provider, run.model, run.cost_usd) == ("replicate", "openai/whisper", 0.04)
    assert run.result.captions is not None
    assert "Bonjour à tous" in local_path_of(run.result.captions.srt).read_text()


def test_sidecars_are_stored_beside_the_video_on_s3(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    from video_pipelines.nodes.handlers.captions import SRT_CONTENT_TYPE, VTT_CONTENT_TYPE
    from video_pipelines.storage import S3ArtifactStore

    store = S3ArtifactStore(s3_bucket, "renders", endpoint_url=s3_endpoint)
    sha = "ab" * 32
    (tmp_path / "c.vtt").write_text(to_webvtt([Cue(0, 1, "On S3")]), encoding="utf-8")
    stored = store.put_sidecar(tmp_path / "c.vtt", video_sha256=sha, suffix=".vtt", content_type=VTT_CONTENT_TYPE)
    assert stored.key == f"videos/ab/{sha}.vtt" and stored.thumbnail_url is None
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=s3_bucket, Key=f"renders/{stored.key}")
    assert head["ContentType"] == VTT_CONTENT_TYPE != SRT_CONTENT_TYPE
    with pytest.raises(StorageError, match="suffix of its own"):
        store.put_sidecar(tmp_path / "c.vtt", video_sha256=sha, suffix=".mp4", content_type=VTT_CONTENT_TYPE)


# ---------------------------------------------------------------- captions carried by merge and reframe


def subtitled(
    store: LocalArtifactStore, folder: Path, name: str, cues: list[dict[str, Any]], *, burn: bool
) -> VideoResult:
    """A 2 s 160x90 clip of its own (seeded by `name`), subtitled with `cues` through run_node."""
    generate_clip(folder / f"{name}.mp4", prompt=name, width=160, height=90, duration=2, seed=len(name))
    node = PlanNode(name, Operation.ADD_SUBTITLES, {"cues": cues, "burn": burn, "language": "fr"})
    env = NodeEnvironment(store=store)
    plain = stored_input(store, folder / f"{name}.mp4")
    return run_node(node, inputs=[plain], upstream={}, lineage=file_sha256(folder / f"{name}.mp4"), env=env).result


def carried(node: PlanNode, inputs: list[VideoResult], store: LocalArtifactStore) -> VideoResult:
    lineage = "c" * 63 + str(len(inputs))
    return run_node(node, inputs=inputs, upstream={}, lineage=lineage, env=NodeEnvironment(store=store)).result


def srt_of(result: VideoResult) -> list[tuple[float, float, str]]:
    assert result.captions is not None
    assert local_path_of(result.captions.srt).name == f"{result.sha256}.srt"
    return [(cue.start, cue.end, cue.text) for cue in parse_srt(local_path_of(result.captions.srt).read_text())]


def test_reframe_keeps_the_subtitle_track_and_the_sidecars(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    soft = subtitled(store, tmp_path, "soft", [{"start": 0.2, "end": 1.5, "text": "Bonjour"}], burn=False)
    square = carried(PlanNode("square", Operation.REFRAME, {"aspectRatio": "1:1"}, depends_on=("soft",)), [soft], store)
    out = local_path_of(square.url)
    assert (probe(out).width, probe(out).height) == (90, 90)
    assert probe(out).subtitle_language == "fra"  # the track, with its language, survives the re-encode
    assert srt_of(square) == [(0.2, 1.5, "Bonjour")]
    assert local_path_of(square.captions.vtt).read_text().startswith("WEBVTT")  # type: ignore[union-attr]


def test_merge_moves_each_inputs_captions_to_where_it_starts(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    first = subtitled(store, tmp_path, "first", [{"start": 0.5, "end": 1.9, "text": "One"}], burn=False)
    generate_clip(tmp_path / "plain.mp4", prompt="plain", width=160, height=90, duration=2, seed=9)
    plain = stored_input(store, tmp_path / "plain.mp4")
    third = subtitled(store, tmp_path, "third", [{"start": 0.1, "end": 0.9, "text": "Three"}], burn=True)
    node = PlanNode(
        "all", Operation.MERGE, {"transition": "crossfade", "transitionDuration": 0.5}, depends_on=("a", "b", "c")
    )
    merged = carried(node, [first, plain, third], store)
    # first starts at 0, the plain clip at 1.5, third at 3.0 (two 0.5 s crossfades); first's cue is cut at 1.5.
    assert srt_of(merged) == [(0.5, 1.5, "One"), (3.1, 3.9, "Three")]
    info = probe(local_path_of(merged.url))
    assert info.subtitle_language == "fra" and abs(info.duration - 5.0) < 0.1

    # Burned-in captions only: the sidecars follow, and no track appears where there was none.
    cut = carried(PlanNode("cut", Operation.MERGE, {}, depends_on=("b", "c")), [plain, third], store)
    assert srt_of(cut) == [(2.1, 2.9, "Three")]
    assert probe(local_path_of(cut.url)).subtitle_language is None
    # Nothing captioned, nothing carried.
    assert carried(PlanNode("bare", Operation.MERGE, {}, depends_on=("b", "b")), [plain, plain], store).captions is None


def test_a_captioned_input_whose_srt_is_gone_fails_naming_it(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "art")
    soft = subtitled(store, tmp_path, "soft", [{"start": 0.2, "end": 1.5, "text": "Bonjour"}], burn=False)
    local_path_of(soft.captions.srt).unlink()  # type: ignore[union-attr]
    with pytest.raises(MediaError, match=r"square: input 1 has captions, but its SRT \(videos/.*\.srt\) is not in"):
        carried(PlanNode("square", Operation.REFRAME, {"aspectRatio": "1:1"}, depends_on=("soft",)), [soft], store)
