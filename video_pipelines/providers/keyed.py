"""What the Replicate and fal adapters share: an API key header, a base URL, default models (`from_env` at run time),
and the three operations, each one job of the provider's (`_job`) whose output its own readers take apart; their
speech models are Whisper's, so the words are read back from Whisper's output shapes here too.

A local video's speech goes as mono 16 kHz MP3 at 32 kbit/s (what Whisper resamples to, ~4 KB/s).
Whisper drops times, restarts its clock every 30 s window (huggingface/distil-whisper#166) and stretches
a window's last word (transformers.js#1357): time keeps going, and no word lasts over `MAX_WORD_SECONDS`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from video_pipelines.errors import ProviderError
from video_pipelines.net import AllowedHosts, fetch_to_file
from video_pipelines.operations.ffmpeg import extract_speech_track
from video_pipelines.providers.base import GenerationRequest, JobLedger, LipSyncRequest, TranscriptionRequest
from video_pipelines.providers.http import (
    DEFAULT_MAX_INLINE_BYTES,
    HttpPolicy,
    ProviderHttp,
    reachable_by_provider,
    remote_input,
)
from video_pipelines.speech import Word, base_language

DEFAULT_WORD_SECONDS = 0.4  # a spoken word's length when the model gives no end
MAX_WORD_SECONDS = 3.0  # a longer "word" (of a piece's average) ran over a pause; it is cut to this
_BACKWARDS_SLACK = 1.0  # seconds a piece may start before the previous one without being a clock reset
SPEECH_SAMPLE_RATE = 16_000  # Whisper's input rate: more is resampled away by the model
SPEECH_BITRATE = "32k"

# ISO 639-1 (and Whisper's own 'haw', 'jw') -> the name Whisper's tokenizer gives the language.
WHISPER_LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
}  # fmt: skip


def whisper_language_name(language: str, *, provider: str) -> str:
    """The Whisper name of `language` ('de' -> 'german'); ProviderError for a language Whisper lacks."""
    code = base_language(language)
    name = WHISPER_LANGUAGES.get(code)
    if name is None:
        raise ProviderError(
            f"{provider}: Whisper does not know the language {language!r}: "
            "give an ISO 639-1 code Whisper transcribes (e.g. 'en', 'de', 'fr')"
        )
    return name


@dataclass(frozen=True)
class _Piece:
    """A stretch of recognised text with the times the model gave it (None where it gave none)."""

    start: float | None
    end: float | None
    text: str


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _text(item: dict[str, Any]) -> str:
    for key in ("word", "text"):
        value = item.get(key)
        if isinstance(value, str):
            return value
    return ""


def _chunk_pieces(chunks: list[Any]) -> list[_Piece]:
    pieces = []
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        stamp = chunk.get("timestamp")
        times = list(stamp) if isinstance(stamp, list | tuple) else [chunk.get("start"), chunk.get("end")]
        start = _seconds(times[0]) if times else None
        end = _seconds(times[1]) if len(times) > 1 else None
        pieces.append(_Piece(start, end, _text(chunk)))
    return pieces


def _word_pieces(words: list[Any]) -> list[_Piece]:
    return [
        _Piece(_seconds(word.get("start")), _seconds(word.get("end")), _text(word))
        for word in words
        if isinstance(word, dict)
    ]


def _segment_pieces(segments: list[Any]) -> list[_Piece]:
    """Each segment's words when the model timed them, else the segment as one piece."""
    pieces: list[_Piece] = []
    for segment in segments:
        if not isinstance(segment, dict):
            continue
        start, end = _seconds(segment.get("start")), _seconds(segment.get("end"))
        words = _word_pieces(segment["words"]) if isinstance(segment.get("words"), list) else []
        if any(word.start is not None or word.end is not None for word in words):
            # An untimed word (WhisperX cannot align numerals) stays inside its segment.
            words[0] = _Piece(start if words[0].start is None else words[0].start, words[0].end, words[0].text)
            words[-1] = _Piece(words[-1].start, end if words[-1].end is None else words[-1].end, words[-1].text)
            pieces.extend(words)
        else:
            pieces.append(_Piece(start, end, _text(segment)))
    return pieces


def _pieces(output: Any) -> list[_Piece] | None:
    """The timed pieces of a model's output; None when it has none of the shapes we know."""
    if isinstance(output, list):
        return _chunk_pieces(output)
    if not isinstance(output, dict):
        return None
    for key, read in (("chunks", _chunk_pieces), ("segments", _segment_pieces), ("words", _word_pieces)):
        if isinstance(output.get(key), list):
            return read(output[key])
    if isinstance(output.get("output"), dict | list):  # a wrapper around the transcript
        return _pieces(output["output"])
    return None


def _timed(pieces: list[_Piece]) -> Iterable[Word]:
    previous_start = previous_end = offset = 0.0
    for index, piece in enumerate(pieces):
        tokens = piece.text.split()
        if not tokens:
            continue
        if piece.start is not None and piece.start + offset < previous_start - _BACKWARDS_SLACK:
            # Time ran backwards: a 30 s window's clock restarted at 0. Carry on from where we were.
            offset = previous_end - piece.start
        start = piece.start + offset if piece.start is not None else previous_end
        end = piece.end + offset if piece.end is not None else None
        if end is None:
            following = next((later.start for later in pieces[index + 1 :] if later.start is not None), None)
            spoken = start + DEFAULT_WORD_SECONDS * len(tokens)
            end = following + offset if following is not None and following + offset > start else spoken
        # No word lasts MAX_WORD_SECONDS: a longer one swallowed a pause (or the window's end).
        end = min(max(end, start), start + MAX_WORD_SECONDS * len(tokens))
        step = (end - start) / len(tokens)
        for position, token in enumerate(tokens):
            yield Word(start=round(start + position * step, 3), end=round(start + (position + 1) * step, 3), text=token)
        previous_start, previous_end = start, end


def words_from_output(output: Any, *, where: str) -> list[Word]:
    """The timed words of a Whisper model's output; ProviderError without times (captions need them)."""
    pieces = _pieces(output)
    if pieces is None:
        text = output.get("text") if isinstance(output, dict) else output if isinstance(output, str) else None
        if isinstance(text, str) and not text.strip():
            return []  # nothing was said
        shape = f"keys: {sorted(output)}" if isinstance(output, dict) else type(output).__name__
        raise ProviderError(
            f"{where} gave no timestamps ({shape}): captions need a speech model that returns "
            "timed chunks, segments or words"
        )
    return list(_timed(pieces))


class ApiKeyProvider:
    """A provider reached with one API key: its configuration and its HTTP client."""

    name: str
    key_variable: ClassVar[str]  # the environment variable of the key, named in errors
    key_label: ClassVar[str]  # what the provider calls its key
    auth_scheme: ClassVar[str]  # of the Authorization header
    base_url_variable: ClassVar[str]
    default_base_url: ClassVar[str]
    default_video_model: ClassVar[str]
    default_lipsync_model: ClassVar[str]
    default_speech_model: ClassVar[str]
    duration_as_text: ClassVar[bool]  # how its video models take `duration`: "5" or 5
    # model (without version) -> (video input name, audio input name); others take the default names.
    lipsync_input_names: ClassVar[Mapping[str, tuple[str, str]]] = {}
    default_lipsync_input_names: ClassVar[tuple[str, str]]
    # Local files up to this size travel inline (a data URI); larger ones go to the provider's file
    # store (its `_upload`), up to `max_upload_bytes` where it publishes a limit.
    default_max_inline_bytes: ClassVar[int] = DEFAULT_MAX_INLINE_BYTES
    max_upload_bytes: int | None = None

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        video_model: str | None = None,
        lipsync_model: str | None = None,
        speech_model: str | None = None,
        allowed: AllowedHosts,
        poll_interval: float = 2.0,
        http: HttpPolicy | None = None,
        max_inline_bytes: int | None = None,
    ) -> None:
        if not api_key:
            raise ProviderError(f"{self.name}: the {self.key_label} is empty (set {self.key_variable})")
        self._key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.video_model = video_model or self.default_video_model
        self.lipsync_model = lipsync_model or self.default_lipsync_model
        self.speech_model = speech_model or self.default_speech_model
        self.allowed = allowed
        self.poll_interval = poll_interval
        self.http = http or HttpPolicy()
        self.max_inline_bytes = self.default_max_inline_bytes if max_inline_bytes is None else max_inline_bytes

    @classmethod
    def from_env(cls, allowed: AllowedHosts, environ: Mapping[str, str] | None = None) -> Self:
        """Configured from the key and base-URL variables; `environ` defaults to `os.environ`."""
        env = os.environ if environ is None else environ
        base_url = env.get(cls.base_url_variable, "").strip() or None
        return cls(env.get(cls.key_variable, "").strip(), base_url=base_url, allowed=allowed)

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.video_model
        inputs = request.common_inputs(duration_as_text=self.duration_as_text)
        self._fetch_video(model, lambda: inputs, out, timeout=timeout, ledger=ledger)

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.lipsync_model
        video_name, audio_name = self.lipsync_input_names.get(model.partition(":")[0], self.default_lipsync_input_names)

        def inputs() -> dict[str, Any]:  # only for a new job: a resumed one uploads nothing again
            video = self._source(request.video_url, request.video, what="video")
            return {video_name: video, audio_name: self._source(request.audio_url, request.audio, what="audio")}

        self._fetch_video(model, inputs, out, timeout=timeout, ledger=ledger)

    def transcribe(self, request: TranscriptionRequest, *, timeout: float | None, ledger: JobLedger) -> list[Word]:
        model = request.model or self.speech_model

        def inputs() -> dict[str, Any]:
            audio = request.media_url
            if not reachable_by_provider(audio):  # the speech track alone, inline or uploaded
                encoding = ["-ar", str(SPEECH_SAMPLE_RATE), "-c:a", "libmp3lame", "-b:a", SPEECH_BITRATE]
                with tempfile.TemporaryDirectory(prefix=f"vp-{self.name}-speech-") as work:
                    track = extract_speech_track(request.media, Path(work) / "speech.mp3", encoding, timeout=timeout)
                    audio = self._source(track.as_uri(), track, what="speech audio")
            return self._transcription_input(model, audio, request.language)

        where, output = self._job(model, inputs, timeout=timeout, ledger=ledger)
        return self._words(output, where)

    def _source(self, url: str, path: Path, *, what: str) -> str:
        limit = self.max_inline_bytes
        return remote_input(url, path, provider=self.name, what=what, max_inline_bytes=limit, upload=self._upload)

    def _fetch_video(
        self, model: str, inputs: Callable[[], dict[str, Any]], out: Path, *, timeout: float | None, ledger: JobLedger
    ) -> None:
        where, output = self._job(model, inputs, timeout=timeout, ledger=ledger)
        fetch_to_file(self._video_url(output, where), out, allowed=self.allowed)

    def _job(
        self, model: str, inputs: Callable[[], dict[str, Any]], *, timeout: float | None, ledger: JobLedger
    ) -> tuple[str, Any]:
        """One job of `model` under `ledger` (`inputs` only for a new one): who answered (for errors), its output."""
        raise NotImplementedError

    def _video_url(self, output: Any, where: str) -> str:
        raise NotImplementedError

    def _transcription_input(self, model: str, audio: str, language: str) -> dict[str, Any]:
        """The speech-to-text inputs of `model` for `audio` (a URL or data URI) in `language` (ISO 639-1)."""
        raise NotImplementedError

    def _words(self, output: Any, where: str) -> list[Word]:
        return words_from_output(output, where=where)

    def _upload(self, path: Path, content_type: str) -> str:
        """Put a local file on the provider's file store; the URL its models read it from."""
        raise NotImplementedError

    def _api(self) -> ProviderHttp:
        return ProviderHttp(
            self.name,
            allowed=self.allowed,
            policy=self.http,
            credential=self.key_variable,
            authorization=f"{self.auth_scheme} {self._key}",
            secret=self._key,
        )
