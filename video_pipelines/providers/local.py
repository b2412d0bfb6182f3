"""The `local` provider: clips rendered with FFmpeg, and PocketSphinx (US English, shipped in its wheel) for speech."""

from __future__ import annotations

import tempfile
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations import generate_clip, replace_audio
from video_pipelines.operations.ffmpeg import extract_speech_track
from video_pipelines.providers.base import GenerationRequest, JobLedger, LipSyncRequest, TranscriptionRequest
from video_pipelines.speech import LOCAL_LANGUAGES, REMOTE_TRANSCRIBERS, Word, base_language

SAMPLE_RATE = 16_000  # what the model was trained on: 16 kHz mono 16-bit PCM
_FRAMES_PER_SECOND = 100  # PocketSphinx's default frame rate (10 ms frames)
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]"}


def transcribe_file(media: Path, *, timeout: float | None = None) -> list[Word]:
    """The English words spoken in `media` (a video or audio file), with their times."""
    from pocketsphinx import Decoder  # a 0.3 s model load: only where a node transcribes

    # 16 kHz mono signed 16-bit little-endian PCM, dithered: on digital silence (all zeros) PocketSphinx hears
    # words ("dog" over 2 s of it); noise of one least significant bit, inaudible, makes it hear nothing there.
    encoding = ["-af", f"aresample={SAMPLE_RATE}:dither_method=triangular", "-f", "s16le"]
    with tempfile.TemporaryDirectory(prefix="vp-speech-") as tmp:
        pcm = extract_speech_track(media, Path(tmp) / "speech.raw", encoding, timeout=timeout).read_bytes()
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm, no_search=False, full_utt=True)
    decoder.end_utt()
    words: list[Word] = []
    for segment in decoder.seg():
        text = segment.word
        if text in _FILLERS or text.startswith("["):
            continue
        text = text.split("(")[0]  # "the(2)": a pronunciation variant of "the"
        start = segment.start_frame / _FRAMES_PER_SECOND
        end = (segment.end_frame + 1) / _FRAMES_PER_SECOND
        words.append(Word(start=round(start, 2), end=round(end, 2), text=text))
    return words


class LocalProvider:
    """Renders a real clip with FFmpeg (gradient, prompt text, tone); lip-sync replaces the audio track;
    speech-to-text runs offline on this machine (US English)."""

    name = "local"

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        r = request
        generate_clip(
            out, prompt=r.prompt, duration=r.duration, width=r.width, height=r.height, seed=r.seed, timeout=timeout
        )

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        replace_audio(request.video, request.audio, out, timeout=timeout)

    def transcribe(self, request: TranscriptionRequest, *, timeout: float | None, ledger: JobLedger) -> list[Word]:
        if base_language(request.language) not in LOCAL_LANGUAGES:
            raise MediaError(
                f"the local recogniser transcribes {', '.join(sorted(LOCAL_LANGUAGES))} only, "
                f"not {request.language!r}: use provider {' or '.join(REMOTE_TRANSCRIBERS)}"
            )
        return transcribe_file(request.media, timeout=timeout)
