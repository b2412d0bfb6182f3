"""The FFmpeg core against the real FFmpeg binary, on clips of a second or two at thumbnail sizes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from video_pipelines.errors import FFmpegError, MediaError
from video_pipelines.operations import (
    Cue,
    MergeStrategy,
    build_ass,
    burn_subtitles,
    dimensions_for,
    escape_ass_text,
    generate_clip,
    merge_videos,
    parse_srt,
    probe,
    reframe_video,
    replace_audio,
    run_ffmpeg,
)
from video_pipelines.operations import ffmpeg as ffmpeg_module
from video_pipelines.operations.ffmpeg import (
    _parse_audio_stream,
    _parse_video_stream,
    escape_filter_value,
    fps_expression,
)
from video_pipelines.storage.digest import file_sha256

from ..media import dominant_frequency, ffmpeg, ffmpeg_stdout, frame_rgb, pcm_mono

HOSTILE = "O'Brien: 100% {\\b1}bold{\\b0} \\N [x] \"q\" C:\\path\\ é 漢字 🎬 ; , = '"
# Seed 12 gives a tone of 440 Hz (220 Hz up 12 semitones).
A440_SEED = 12


# ---------------------------------------------------------------- helpers


def video_packets(path: Path) -> list[str]:
    """Size and checksum of every video packet, read without decoding."""
    text = ffmpeg_stdout("-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-").decode()
    return [",".join(line.split(",")[4:6]) for line in text.splitlines() if line and not line.startswith("#")]


def changed_pixels(before: bytes, after: bytes, width: int, rows: range, threshold: int = 60) -> set[tuple[int, int]]:
    changed = set()
    for y in rows:
        for x in range(width):
            i = (y * width + x) * 3
            if sum(abs(before[i + c] - after[i + c]) for c in range(3)) > threshold:
                changed.add((x, y))
    return changed


def ffmpeg_children() -> list[int]:
    """Pids of FFmpeg processes whose parent is this test process (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and "ffmpeg" in name:
            found.append(int(entry.name))
    return found


def assert_standard_mp4(path: Path, *, duration: float, width: int, height: int, tolerance: float = 0.05) -> None:
    info = probe(path)
    assert (info.width, info.height) == (width, height)
    assert info.duration == pytest.approx(duration, abs=tolerance)
    assert info.video_codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert (info.audio_codec, info.sample_rate, info.channels) == ("aac", 48000, 2)


@dataclass(frozen=True)
class Clips:
    a: Path  # 320x180, 25 fps, 1.0 s, 440 Hz tone
    b: Path  # 320x180, 25 fps, 1.2 s
    small: Path  # 160x120, 30 fps, 1.0 s, audio 44.1 kHz mono
    silent: Path  # 160x90, 25 fps, 0.8 s, no audio stream
    tone_short: Path  # 1000 Hz, 0.4 s, WAV
    tone_long: Path  # 1000 Hz, 3 s, AAC in M4A


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    root = tmp_path_factory.mktemp("clips")
    generate_clip(root / "a.mp4", prompt="Scene A", duration=1.0, width=320, height=180, seed=A440_SEED)
    generate_clip(root / "b.mp4", prompt="Scene B", duration=1.2, width=320, height=180, seed=5)
    generate_clip(root / "small30.mp4", prompt="Small", duration=1.0, width=160, height=120, seed=9, fps=30)
    ffmpeg(
        "-i",
        str(root / "small30.mp4"),
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-ar",
        "44100",
        "-ac",
        "1",
        str(root / "small.mp4"),
    )
    generate_clip(root / "silent_src.mp4", prompt="Silent", duration=0.8, width=160, height=90, seed=3)
    ffmpeg("-i", str(root / "silent_src.mp4"), "-c:v", "copy", "-an", str(root / "silent.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:duration=0.4", "-c:a", "pcm_s16le", str(root / "short.wav"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=1000:duration=3", "-c:a", "aac", str(root / "long.m4a"))
    return Clips(
        a=root / "a.mp4",
        b=root / "b.mp4",
        small=root / "small.mp4",
        silent=root / "silent.mp4",
        tone_short=root / "short.wav",
        tone_long=root / "long.m4a",
    )


@pytest.fixture
def hostile_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make every temporary file (prompt text, ASS script, concat list) live under a path full of
    filtergraph metacharacters, so escaping mistakes fail loudly."""
    hostile = tmp_path / "we'ird, [dir]; a:b\\c %x = é"
    hostile.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(hostile))
    return hostile


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("ratio", "short", "expected"),
    [
        ("16:9", 720, (1280, 720)),
        ("9:16", 720, (720, 1280)),
        ("1:1", 720, (720, 720)),
        ("4:5", 720, (720, 900)),
        ("16:9", 180, (320, 180)),
        ("9:16", 90, (90, 160)),
    ],
)
def test_dimensions_for(ratio: str, short: int, expected: tuple[int, int]) -> None:
    assert dimensions_for(ratio, short) == expected


def test_dimensions_for_rejects_unknown_ratio_and_odd_sizes() -> None:
    with pytest.raises(MediaError, match="21:9"):
        dimensions_for("21:9", 720)
    with pytest.raises(MediaError, match="even"):
        dimensions_for("16:9", 721)


def test_escape_ass_text_neutralises_tags_escapes_and_newlines() -> None:
    wj = "\u2060"
    assert escape_ass_text("{\\b1}x{\\b0}") == f"\\{{\\{wj}b1\\}}x\\{{\\{wj}b0\\}}"
    assert escape_ass_text("a\\Nb") == f"a\\{wj}Nb"
    assert escape_ass_text("one\ntwo\r\nthree\rfour") == "one\\Ntwo\\Nthree\\Nfour"
    assert escape_ass_text("tab\there\x00") == "tab here "
    assert escape_ass_text("é 漢字 🎬 ; , = ' \"") == "é 漢字 🎬 ; , = ' \""


def test_parse_srt_is_tolerant() -> None:
    srt = (
        "\ufeff1\r\n00:00:00,000 --> 00:00:01,500\r\nHello {there}\r\nsecond line\r\n\r\n\r\n"
        "2\r\n00:00:01.500 --> 00:00:02.25 X1:10 X2:20\r\nDot millis\r\n\r\n"
        "00:01:02,003 --> 01:00:00,000\r\nNo number\r\n\r\n"
        "3\n00:59:59,999 --> 01:00:00,500\nA cue\n\nwith a blank line inside\n"
    )
    cues = parse_srt(srt)
    assert cues == [
        Cue(0.0, 1.5, "Hello {there}\nsecond line"),
        Cue(1.5, 2.25, "Dot millis"),
        Cue(62.003, 3600.0, "No number"),
        Cue(3599.999, 3600.5, "A cue\n\nwith a blank line inside"),
    ]


@pytest.mark.parametrize(
    ("srt", "message"),
    [
        ("1\n00:00:00,000 --> 00:00:01,000\nok\n\n7\n00:00:xx,000 --> 00:00:02,000\nbad\n", "cue 7"),
        ("1\n00:00:02,000 --> 00:00:01,000\nbackwards\n", "cue 1"),
        ("1\n00:00:00,000 --> 00:00:01,000\nok\n\n2\nno timing here\n", "cue 2"),
        ("just text\n", "cue 1"),
        ("1\n00:00:61,000 --> 00:01:02,000\nsixty-one seconds\n", "cue 1"),
    ],
)
def test_parse_srt_names_the_bad_cue(srt: str, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        parse_srt(srt)


def test_build_ass_script() -> None:
    script = build_ass(
        [Cue(0, 1.234, HOSTILE), Cue(61.5, 3723.456, "two\nlines")], width=720, height=1280, position="top"
    )
    lines = script.splitlines()
    assert lines[0] == "[Script Info]"
    assert "PlayResX: 720" in lines and "PlayResY: 1280" in lines
    style = next(line for line in lines if line.startswith("Style: "))
    fields = style.removeprefix("Style: ").split(",")
    assert fields[1] == "DejaVu Sans"
    assert fields[2] == "43"  # 6% of the 720 px short side
    assert fields[18] == "8"  # top centre
    dialogues = [line for line in lines if line.startswith("Dialogue: ")]
    assert dialogues[0] == f"Dialogue: 0,0:00:00.00,0:00:01.23,Default,,0,0,0,,{escape_ass_text(HOSTILE)}"
    assert dialogues[1].startswith("Dialogue: 0,0:01:01.50,1:02:03.46,")
    assert dialogues[1].endswith(",two\\Nlines")
    alignments = {
        position: build_ass([Cue(0, 1, "x")], width=320, height=180, position=position, font_size=20)
        for position in ("bottom", "center", "top")
    }
    for position, number in (("bottom", "2"), ("center", "5"), ("top", "8")):
        assert ",20,&H00FFFFFF," in alignments[position]
        style = next(line for line in alignments[position].splitlines() if line.startswith("Style: "))
        assert style.split(",")[18] == number


def test_build_ass_and_cue_validation() -> None:
    with pytest.raises(MediaError, match="position"):
        build_ass([Cue(0, 1, "x")], width=320, height=180, position="left")
    with pytest.raises(MediaError, match="fontSize"):
        build_ass([Cue(0, 1, "x")], width=320, height=180, font_size=0)
    with pytest.raises(MediaError, match="after start"):
        Cue(2.0, 1.0, "backwards")
    with pytest.raises(MediaError, match="negative"):
        Cue(-1.0, 1.0, "early")


def test_escape_filter_value() -> None:
    assert escape_filter_value("/tmp/a b/c.ass") == "/tmp/a b/c.ass"
    assert escape_filter_value("/x/it's:a,b[1];c\\d") == "/x/it\\\\\\'s\\\\:a\\,b\\[1\\]\\;c\\\\\\\\d"
    with pytest.raises(MediaError, match="whitespace"):
        escape_filter_value(" leading")


def test_stream_line_parsing() -> None:
    video = _parse_video_stream(
        "h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], "
        "5000 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)"
    )
    assert video is not None
    assert (video.codec, video.pix_fmt, video.width, video.height, video.fps) == (
        "h264", "yuv420p", 1920, 1080, 29.97
    )  # fmt: skip
    audio = _parse_audio_stream("aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1(side), fltp, 384 kb/s (default)")
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 44100, 6)
    assert _parse_audio_stream("pcm_s16le ([1][0][0][0] / 0x0001), 48000 Hz, mono, s16, 768 kb/s").channels == 1
    assert fps_expression(29.97) == "30000/1001"
    assert fps_expression(25.0) == "25"
    assert fps_expression(12.5) == "25/2"


# ---------------------------------------------------------------- probe and run_ffmpeg


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"video" * 100_000)
    assert file_sha256(path) == hashlib.sha256(b"video" * 100_000).hexdigest()


def test_probe_rejects_what_is_not_a_video(tmp_path: Path, clips: Clips) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just some words, not a video\n" * 10)
    with pytest.raises(MediaError, match=r"notes\.txt"):
        probe(text)
    with pytest.raises(MediaError, match=r"short\.wav: has no video stream"):
        probe(clips.tone_short)
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_probe_reads_audio_details(clips: Clips) -> None:
    small = probe(clips.small)
    assert (small.width, small.height, small.fps) == (160, 120, 30.0)
    assert (small.sample_rate, small.channels) == (44100, 1)
    assert small.has_audio
    assert not probe(clips.silent).has_audio


def test_ffmpeg_error_carries_stderr(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(["-i", str(corrupt), "-f", "null", "-"], description="decoding the corrupt file")
    error = caught.value
    assert str(error).startswith("decoding the corrupt file: FFmpeg exited with code")
    assert error.returncode not in (None, 0)
    assert error.stderr_tail
    assert error.stderr_tail in str(error)
    assert "corrupt.mp4" in error.stderr_tail


_LONG_RENDER = [
    "-f",
    "lavfi",
    "-i",
    "testsrc2=s=1280x720:r=60:d=600",
    "-c:v",
    "libx264",
    "-preset",
    "slow",
    "-f",
    "null",
    "-",
]


def test_run_ffmpeg_timeout_kills_ffmpeg() -> None:
    started = time.monotonic()
    with pytest.raises(FFmpegError, match=r"did not finish within 0\.5 s"):
        run_ffmpeg(_LONG_RENDER, description="a long render", timeout=0.5)
    assert time.monotonic() - started < 10
    assert ffmpeg_children() == []


def test_run_ffmpeg_interrupt_kills_ffmpeg_and_reraises() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt_once_ffmpeg_runs() -> None:
        # The interrupt comes while FFmpeg renders, not at a fixed time: on a loaded machine 0.5 s could fall
        # inside the spawn, where no process handle exists yet to kill.
        deadline = time.monotonic() + 60
        while not ffmpeg_children() and time.monotonic() < deadline:
            time.sleep(0.02)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        threading.Thread(target=interrupt_once_ffmpeg_runs, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run_ffmpeg(_LONG_RENDER, description="a long render")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert ffmpeg_children() == []


def test_an_interrupt_during_the_spawn_still_kills_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt that arrives while FFmpeg is being spawned (the child exists, its handle not yet returned to
    us) is held until the handle is ours: then it is raised, and FFmpeg killed, not left running on its own."""
    spawned: list[int] = []
    real_popen = subprocess.Popen

    def popen_then_interrupt(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kwargs)
        spawned.append(proc.pid)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)  # before Popen has returned
        return proc

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ffmpeg_module.subprocess, "Popen", popen_then_interrupt)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_ffmpeg(_LONG_RENDER, description="a long render")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert spawned and not _alive(spawned[0]) and ffmpeg_children() == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_ffmpeg_dies_with_its_parent() -> None:
    script = textwrap.dedent(
        f"""
        from video_pipelines.operations.ffmpeg import run_ffmpeg
        run_ffmpeg({_LONG_RENDER!r}, description="orphan test")
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        child = None
        deadline = time.monotonic() + 20
        while child is None and time.monotonic() < deadline:
            for entry in Path("/proc").glob("[0-9]*/stat"):
                try:
                    stat = entry.read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent.pid and "ffmpeg" in stat:
                    child = int(entry.parent.name)
            time.sleep(0.05)
        assert child is not None, "FFmpeg never started"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()


# ---------------------------------------------------------------- generate


def test_generate_clip_is_exact_and_deterministic(tmp_path: Path, hostile_tempdir: Path) -> None:
    prompt = 'A fox\'s "dream": 100% {real} %{pts} \\N [x]; a,b=c 👩\u200d🚀 \ud800\x07\n' + "words " * 80
    first, again, other = tmp_path / "first.mp4", tmp_path / "again.mp4", tmp_path / "other.mp4"
    generate_clip(first, prompt=prompt, duration=1.3, width=320, height=180, seed=42)
    generate_clip(again, prompt=prompt, duration=1.3, width=320, height=180, seed=42)
    generate_clip(other, prompt=prompt, duration=1.3, width=320, height=180, seed=43)
    assert_standard_mp4(first, duration=1.3, width=320, height=180)
    assert file_sha256(first) == file_sha256(again)
    assert file_sha256(first) != file_sha256(other)
    assert list(hostile_tempdir.iterdir()) == []  # temporary files cleaned up
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial outputs left


@pytest.mark.parametrize(
    ("duration", "width", "height", "fps"), [(1.0, 160, 90, 25), (2.0, 90, 160, 30), (0.5, 64, 64, 24)]
)
def test_generate_clip_sizes_and_rates(tmp_path: Path, duration: float, width: int, height: int, fps: int) -> None:
    out = tmp_path / "clip.mp4"
    generate_clip(out, prompt="Portrait and square too", duration=duration, width=width, height=height, seed=1, fps=fps)
    assert_standard_mp4(out, duration=duration, width=width, height=height)
    assert probe(out).fps == fps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"duration": 0}, "duration"),
        ({"width": 321}, "even"),
        ({"fps": 0}, "fps"),
    ],
)
def test_generate_clip_validates(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"prompt": "x", "duration": 1.0, "width": 320, "height": 180, "seed": 1}
    arguments.update(kwargs)
    with pytest.raises(MediaError, match=message):
        generate_clip(tmp_path / "x.mp4", **arguments)  # type: ignore[arg-type]


# ---------------------------------------------------------------- merge


def test_merge_cut_of_matching_clips_copies_the_video(tmp_path: Path, clips: Clips, hostile_tempdir: Path) -> None:
    out = tmp_path / "cut.mp4"
    assert merge_videos([clips.a, clips.b, clips.a], out) is MergeStrategy.STREAM_COPY
    assert_standard_mp4(out, duration=3.2, width=320, height=180)
    # Not re-encoded: the packets are the inputs' packets, in order.
    assert video_packets(out) == video_packets(clips.a) + video_packets(clips.b) + video_packets(clips.a)
    # The audio is exactly as long as the video: no drift at the joins.
    assert len(pcm_mono(out)) == round(3.2 * 48000)


def test_merge_single_input_is_a_copy(tmp_path: Path, clips: Clips) -> None:
    out = tmp_path / "one.mp4"
    assert merge_videos([clips.b], out, transition="crossfade") is MergeStrategy.STREAM_COPY
    assert_standard_mp4(out, duration=1.2, width=320, height=180)
    assert video_packets(out) == video_packets(clips.b)


def test_merge_normalises_mismatched_inputs_to_the_first(tmp_path: Path, clips: Clips) -> None:
    out = tmp_path / "mixed.mp4"
    assert merge_videos([clips.a, clips.small, clips.silent], out) is MergeStrategy.RE_ENCODE
    assert_standard_mp4(out, duration=1.0 + 1.0 + 0.8, width=320, height=180, tolerance=0.1)
    assert probe(out).fps == 25
    assert len(pcm_mono(out)) == pytest.approx(2.8 * 48000, abs=0.05 * 48000)
    # The silent clip became silence; the 4:3 clip is pillarboxed (black bars left and right).
    samples = pcm_mono(out)
    assert max(abs(s) for s in samples[round(2.1 * 48000) : round(2.7 * 48000)]) < 50
    frame = frame_rgb(out, 1.5)
    left_bar = frame[(90 * 320 + 10) * 3 : (90 * 320 + 10) * 3 + 3]
    assert max(left_bar) < 30


@pytest.mark.parametrize("transition", ["crossfade", "fade"])
def test_merge_transitions_overlap(tmp_path: Path, clips: Clips, transition: str) -> None:
    out = tmp_path / f"{transition}.mp4"
    strategy = merge_videos([clips.a, clips.b, clips.small], out, transition=transition, transition_duration=0.4)
    assert strategy is MergeStrategy.RE_ENCODE
    assert_standard_mp4(out, duration=1.0 + 1.2 + 1.0 - 2 * 0.4, width=320, height=180, tolerance=0.1)


def test_merge_fade_goes_through_black(tmp_path: Path, clips: Clips) -> None:
    fade, crossfade = tmp_path / "fade.mp4", tmp_path / "crossfade.mp4"
    merge_videos([clips.a, clips.b], fade, transition="fade", transition_duration=0.4)
    merge_videos([clips.a, clips.b], crossfade, transition="crossfade", transition_duration=0.4)
    # Mid-transition (offset 0.6 s + 0.2 s): fade is near black, crossfade is a bright blend.
    assert sum(frame_rgb(fade, 0.8)) / (320 * 180 * 3) < 40
    assert sum(frame_rgb(crossfade, 0.8)) / (320 * 180 * 3) > 60


def test_re_encoding_operations_are_deterministic(tmp_path: Path, clips: Clips) -> None:
    for name in ("one", "two"):
        merge_videos([clips.a, clips.small], tmp_path / f"merge-{name}.mp4", transition="crossfade")
        burn_subtitles(clips.a, tmp_path / f"subs-{name}.mp4", cues=[Cue(0, 1, HOSTILE)])
        reframe_video(clips.a, tmp_path / f"blur-{name}.mp4", aspect_ratio="9:16", mode="blur")
        replace_audio(clips.a, clips.tone_long, tmp_path / f"audio-{name}.mp4")
    for kind in ("merge", "subs", "blur", "audio"):
        assert file_sha256(tmp_path / f"{kind}-one.mp4") == file_sha256(tmp_path / f"{kind}-two.mp4")


def test_merge_validates(tmp_path: Path, clips: Clips) -> None:
    with pytest.raises(MediaError, match="at least one"):
        merge_videos([], tmp_path / "x.mp4")
    with pytest.raises(MediaError, match="transition must be one of"):
        merge_videos([clips.a, clips.b], tmp_path / "x.mp4", transition="wipe")
    with pytest.raises(MediaError, match=r"silent\.mp4 lasts 0\.8"):
        merge_videos([clips.a, clips.silent], tmp_path / "x.mp4", transition="fade", transition_duration=0.8)
    with pytest.raises(MediaError, match="positive"):
        merge_videos([clips.a, clips.b], tmp_path / "x.mp4", transition="fade", transition_duration=0)
    assert not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------- replace audio


def test_replace_audio_puts_the_new_tone_in(tmp_path: Path, clips: Clips) -> None:
    original = pcm_mono(clips.a)
    assert dominant_frequency(original[: 48000 // 2]) == pytest.approx(440, abs=20)

    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    replace_audio(clips.a, clips.tone_short, short)
    replace_audio(clips.a, clips.tone_long, long)
    for out in (short, long):
        assert_standard_mp4(out, duration=1.0, width=320, height=180)
        assert video_packets(out) == video_packets(clips.a)  # the video stream is copied
        samples = pcm_mono(out)
        assert len(samples) == pytest.approx(48000, abs=1100)
        assert dominant_frequency(samples[: 48000 // 3]) == pytest.approx(1000, abs=30)
    # The 0.4 s tone is padded with silence to the video's length.
    assert max(abs(s) for s in pcm_mono(short)[round(0.5 * 48000) :]) < 50


def test_replace_audio_needs_an_audio_stream(tmp_path: Path, clips: Clips) -> None:
    with pytest.raises(MediaError, match="has no audio stream"):
        replace_audio(clips.a, clips.silent, tmp_path / "x.mp4")


# ---------------------------------------------------------------- subtitles


def test_burn_subtitles_with_hostile_text(tmp_path: Path, clips: Clips, hostile_tempdir: Path) -> None:
    out = tmp_path / "subs.mp4"
    burn_subtitles(clips.b, out, cues=[Cue(0.0, 1.2, HOSTILE)])
    assert_standard_mp4(out, duration=1.2, width=320, height=180)
    before, after = frame_rgb(clips.b, 0.5), frame_rgb(out, 0.5)
    assert changed_pixels(before, after, 320, range(120, 180))  # the subtitle band
    assert not changed_pixels(before, after, 320, range(0, 30))  # nothing drawn at the top
    assert video_packets(out) != video_packets(clips.b)


def test_burn_subtitles_from_srt_in_order_and_position(tmp_path: Path, clips: Clips) -> None:
    cues = parse_srt("1\n00:00:00,000 --> 00:00:00,500\nFirst cue\n\n2\n00:00:00,600 --> 00:00:01,000\nSecond\n")
    out = tmp_path / "srt.mp4"
    burn_subtitles(clips.a, out, cues=cues, position="top", font_size=20)
    assert_standard_mp4(out, duration=1.0, width=320, height=180)
    for at in (0.2, 0.8):
        assert changed_pixels(frame_rgb(clips.a, at), frame_rgb(out, at), 320, range(0, 45))
    # Between the cues nothing is drawn.
    assert not changed_pixels(frame_rgb(clips.a, 0.54), frame_rgb(out, 0.54), 320, range(0, 180))


def _ink(clip: Path, tmp_path: Path, text: str) -> set[tuple[int, int]]:
    out = tmp_path / f"ink{abs(hash(text))}.mp4"
    burn_subtitles(clip, out, cues=[Cue(0.0, 1.0, text)], font_size=24, position="center")
    return changed_pixels(frame_rgb(clip, 0.5), frame_rgb(out, 0.5), 320, range(180))


def test_libass_renders_tags_and_escapes_literally(tmp_path: Path, clips: Clips) -> None:
    plain = _ink(clips.a, tmp_path, "X")
    tagged = _ink(clips.a, tmp_path, "{\\b1}X{\\b0}")
    # If libass had read "{\b1}" as a bold tag, only a (bold) X would be drawn.
    assert len(tagged) > 4 * len(plain)
    one_line = _ink(clips.a, tmp_path, "ab")
    escaped_break = _ink(clips.a, tmp_path, "a\\Nb")
    real_break = _ink(clips.a, tmp_path, "a\nb")

    def height(ink: set[tuple[int, int]]) -> int:
        return max(y for _, y in ink) - min(y for _, y in ink)

    assert height(escaped_break) < 1.3 * height(one_line)  # "\N" typed by a user stays on one line
    assert height(real_break) > 1.6 * height(one_line)  # a real newline breaks the line


def test_burn_subtitles_adds_silence_to_a_silent_video(tmp_path: Path, clips: Clips) -> None:
    out = tmp_path / "silent-subs.mp4"
    burn_subtitles(clips.silent, out, cues=[Cue(0, 0.8, "hello")])
    assert_standard_mp4(out, duration=0.8, width=160, height=90)


def test_burn_subtitles_validates(tmp_path: Path, clips: Clips) -> None:
    with pytest.raises(MediaError, match="no subtitle cues"):
        burn_subtitles(clips.a, tmp_path / "x.mp4", cues=[])
    with pytest.raises(MediaError, match="position"):
        burn_subtitles(clips.a, tmp_path / "x.mp4", cues=[Cue(0, 1, "x")], position="middle")


# ---------------------------------------------------------------- reframe


@pytest.mark.parametrize("mode", ["crop", "pad", "blur"])
@pytest.mark.parametrize("ratio", ["9:16", "1:1"])
def test_reframe(tmp_path: Path, clips: Clips, mode: str, ratio: str) -> None:
    out = tmp_path / f"{mode}.mp4"
    reframe_video(clips.a, out, aspect_ratio=ratio, mode=mode)
    info = probe(out)
    across, down = (int(n) for n in ratio.split(":"))
    assert info.width % 2 == 0 and info.height % 2 == 0
    assert info.width / info.height == pytest.approx(across / down, abs=2 / min(info.width, info.height))
    expected = {"crop": 180, "pad": 320, "blur": 320}[mode]
    assert (info.height if mode == "crop" else info.width) == expected
    assert_standard_mp4(out, duration=1.0, width=info.width, height=info.height)
    # pad leaves black bars above and below the picture; blur fills them with the blurred picture.
    top_row = frame_rgb(out, 0.5)[: info.width * 3]
    if mode == "pad":
        assert max(top_row) < 30
    elif mode == "blur":
        assert sum(top_row) / len(top_row) > 40


def test_reframe_validates(tmp_path: Path, clips: Clips) -> None:
    with pytest.raises(MediaError, match="aspectRatio"):
        reframe_video(clips.a, tmp_path / "x.mp4", aspect_ratio="3:2")
    with pytest.raises(MediaError, match="mode"):
        reframe_video(clips.a, tmp_path / "x.mp4", aspect_ratio="1:1", mode="stretch")
