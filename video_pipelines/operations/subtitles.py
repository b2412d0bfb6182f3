"""addSubtitles: cues as an ASS script burned into a video, or a soft subtitle track.

User text never reaches a filter string: it goes into an ASS file through `escape_ass_text`.
Against imageio-ffmpeg's libass: `\\{` `\\}` are literal braces; a backslash followed by
U+2060 WORD JOINER is no escape; a newline becomes ``\\N``. Karaoke puts ``{\\kNN}`` before
each word: SecondaryColour (white) until spoken, then PrimaryColour (yellow).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.common import FONT_FILE, atomic_output, filter_video
from video_pipelines.operations.ffmpeg import check_timeout, escape_filter_path, probe, run_ffmpeg
from video_pipelines.speech import Word, base_language
from video_pipelines.speech.cues import Cue
from video_pipelines.speech.srt import WORD_JOINER, printable_lines, to_srt

FONT_NAME = "DejaVu Sans"
# ASS alignment uses numpad positions: 2 bottom centre, 5 middle centre, 8 top centre.
POSITIONS = {"bottom": 2, "center": 5, "top": 8}


def escape_ass_text(text: str) -> str:
    """Make `text` render literally in libass: no override tags, no escapes, newlines as ``\\N``."""
    text = printable_lines(text)
    text = text.replace("\\", "\\" + WORD_JOINER)
    text = text.replace("{", "\\{").replace("}", "\\}")
    return text.replace("\n", "\\N")


def _ass_time(seconds: float) -> str:
    centis = round(seconds * 100)
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def _timed_lines(cue: Cue) -> list[list[Word]]:
    """The cue's words line by line with their times: its own, else the cue's time spread by word length."""
    lines = [line.split() for line in cue.text.split("\n")]
    tokens = [token for line in lines for token in line]
    if cue.words and [word.text for word in cue.words] == tokens:
        timed = list(cue.words)
    else:
        span, total = cue.end - cue.start, sum(len(token) + 1 for token in tokens) or 1
        timed, at = [], cue.start
        for token in tokens:
            length = span * (len(token) + 1) / total
            timed.append(Word(start=at, end=min(cue.end, at + length), text=token))
            at += length
    words = iter(timed)
    return [list(itertools.islice(words, len(line))) for line in lines]


def _karaoke_text(cue: Cue) -> str:
    """The cue's text with a ``{\\kNN}`` before each word: centiseconds from its start to the next word's."""
    lines = _timed_lines(cue)
    words = [word for line in lines for word in line]
    # Boundaries rounded once, on the cue's clock, so the rounding of many words does not drift.
    starts = [round((max(word.start, cue.start) - cue.start) * 100) for word in words]
    ends = [*starts[1:], round((cue.end - cue.start) * 100)]
    lead = f"{{\\k{starts[0]}}}" if words and starts[0] > 0 else ""
    tags = iter(f"{{\\k{max(0, end - start)}}}" for start, end in zip(starts, ends, strict=True))
    return lead + "\\N".join(" ".join(next(tags) + escape_ass_text(word.text) for word in line) for line in lines)


def build_ass(
    cues: Sequence[Cue],
    *,
    width: int,
    height: int,
    font_size: int | None = None,
    position: str = "bottom",
    highlight: str = "none",
) -> str:
    """An ASS script drawing `cues` on a `width` x `height` video; `highlight="word"`: karaoke."""
    if width <= 0 or height <= 0:
        raise MediaError(f"subtitles: video size must be positive, got {width}x{height}")
    if position not in POSITIONS:
        raise MediaError(f"subtitles: position must be one of {', '.join(POSITIONS)}, got {position!r}")
    if highlight not in ("none", "word"):
        raise MediaError(f"subtitles: highlight must be 'none' or 'word', got {highlight!r}")
    if font_size is None:  # readable on both landscape and portrait frames: 6% of the short side
        font_size = max(8, round(min(width, height) * 0.06))
    if isinstance(font_size, bool) or not isinstance(font_size, int) or font_size <= 0:
        raise MediaError(f"subtitles: fontSize must be a positive integer, got {font_size!r}")
    outline = max(1, round(font_size / 14))
    # &HAABBGGRR. Karaoke: spoken words in yellow (primary), the ones to come in white (secondary).
    primary, secondary = ("&H0000FFFF", "&H00FFFFFF") if highlight == "word" else ("&H00FFFFFF", "&H000000FF")
    margin_v = max(4, round(height * 0.05))
    margin_h = max(4, round(width * 0.05))
    header = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: None",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
        "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, "
        "Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        f"Style: Default,{FONT_NAME},{font_size},{primary},{secondary},&H00000000,&H80000000,"
        f"0,0,0,0,100,100,0,0,1,{outline},1,{POSITIONS[position]},{margin_h},{margin_h},{margin_v},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = []
    for cue in cues:
        start, end = _ass_time(cue.start), _ass_time(cue.end)
        if end == start:
            end = _ass_time(cue.start + 0.01)
        text = _karaoke_text(cue) if highlight == "word" else escape_ass_text(cue.text)
        events.append(f"Dialogue: 0,{start},{end},Default,,0,0,0,,{text}")
    return "\n".join([*header, *events]) + "\n"


def burn_subtitles(
    video: Path,
    out: Path,
    *,
    cues: Sequence[Cue],
    font_size: int | None = None,
    position: str = "bottom",
    highlight: str = "none",
    timeout: float | None = None,
) -> None:
    """Burn `cues` into `video` with libass (bundled DejaVu Sans); the audio is kept."""
    if not cues:
        raise MediaError("addSubtitles: there are no subtitle cues to burn")
    if position not in POSITIONS:
        raise MediaError(f"addSubtitles: position must be one of {', '.join(POSITIONS)}, got {position!r}")
    check_timeout(timeout)
    info = probe(video)
    width, height = info.width - info.width % 2, info.height - info.height % 2
    script = build_ass(cues, width=width, height=height, font_size=font_size, position=position, highlight=highlight)
    with tempfile.TemporaryDirectory(prefix="vp-subtitles-") as tmp:
        ass_file = Path(tmp) / "subtitles.ass"
        ass_file.write_text(script, encoding="utf-8")
        # A folder holding only the font: libass tries to load every file in fontsdir.
        fonts = Path(tmp) / "fonts"
        fonts.mkdir()
        try:
            (fonts / FONT_FILE.name).symlink_to(FONT_FILE.absolute())
        except OSError:
            shutil.copyfile(FONT_FILE, fonts / FONT_FILE.name)
        chain = (
            f"[0:v:0]crop={width}:{height}:0:0,setsar=1,"
            f"ass=filename={escape_filter_path(ass_file)}:fontsdir={escape_filter_path(fonts)},"
            "format=yuv420p[vout]"
        )
        filter_video(
            video,
            out,
            info=info,
            video_chain=chain,
            description=f"addSubtitles: burning {len(cues)} cues into {video.name}",
            timeout=timeout,
        )


# ISO 639-1 -> ISO 639-2/T, the three letters an MP4 track's language is written in (ISO 14496-12).
_ISO_639_2 = {
    "ar": "ara", "bn": "ben", "cs": "ces", "da": "dan", "de": "deu", "el": "ell", "en": "eng", "es": "spa",
    "fa": "fas", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind", "it": "ita",
    "ja": "jpn", "ko": "kor", "ms": "msa", "nl": "nld", "no": "nor", "pl": "pol", "pt": "por", "ro": "ron",
    "ru": "rus", "sv": "swe", "th": "tha", "tr": "tur", "uk": "ukr", "vi": "vie", "zh": "zho",
}  # fmt: skip


def track_language(language: str | None) -> str:
    """The MP4 language code of a subtitle track: `eng` for `en` or `en-US`; `und` when unknown."""
    if not language:
        return "und"
    code = base_language(language)
    if len(code) == 3 and code.isalpha():
        return code
    return _ISO_639_2.get(code, "und")


def add_subtitle_track(
    video: Path, out: Path, *, cues: Sequence[Cue], language: str | None = None, timeout: float | None = None
) -> None:
    """`video` with `cues` as a soft `mov_text` track; video and audio packets are copied."""
    if not cues:
        raise MediaError("addSubtitles: there are no subtitle cues to add")
    check_timeout(timeout)
    with tempfile.TemporaryDirectory(prefix="vp-subtitles-") as tmp:
        srt = Path(tmp) / "subtitles.srt"
        srt.write_text(to_srt(cues), encoding="utf-8")
        with atomic_output(out) as partial:
            run_ffmpeg(
                [
                    "-i", str(video), "-f", "srt", "-i", str(srt),
                    "-map", "0:v:0", "-map", "0:a:0?", "-map", "1:0",
                    "-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text",
                    "-metadata:s:s:0", f"language={track_language(language)}",
                    # The shared output's determinism (operations.common), with every packet copied.
                    "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact",
                    "-movflags", "+faststart", "-f", "mp4", str(partial),
                ],
                description=f"addSubtitles: adding a track of {len(cues)} cues to {video.name}",
                timeout=timeout,
            )  # fmt: skip
