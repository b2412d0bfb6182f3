"""Each operation's handler (`HANDLERS` maps an operation to it), what a handler works with, and the
captions a node's output carries: stored as SRT/WebVTT sidecars, and carried through merge and reframe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from video_pipelines.errors import MediaError
from video_pipelines.net import fetch_to_file
from video_pipelines.nodes.environment import NodeEnvironment, from_store
from video_pipelines.operations import (
    Cue,
    add_subtitle_track,
    burn_subtitles,
    dimensions_for,
    merge_videos,
    parse_srt,
    probe,
    reframe_video,
    to_srt,
    to_webvtt,
)
from video_pipelines.plan.params import (
    AddSubtitlesParams,
    GenerateVideoParams,
    LipSyncParams,
    MergeParams,
    Operation,
    ReframeParams,
)
from video_pipelines.plan.results import Captions, VideoResult
from video_pipelines.providers import (
    GenerationRequest,
    JobLedger,
    LipSyncRequest,
    TranscriptionRequest,
    lip_syncer,
    speech_transcriber,
    video_generator,
)
from video_pipelines.speech.cues import cues_from_words
from video_pipelines.storage import ArtifactStore

Log = Callable[[str], None]


@dataclass(frozen=True)
class OperationCall:
    """What an operation handler works with besides its params: local inputs, the output, the deployment."""

    node_id: str
    inputs: list[Path]
    input_results: Sequence[VideoResult]
    input_urls: list[str]
    out: Path
    work: Path
    env: NodeEnvironment
    lineage: str
    log: Log
    ledger: JobLedger


@dataclass(frozen=True)
class Captioned:
    """A captioned output: its cues, and who transcribed them (None: given, or carried from inputs)."""

    provider: str | None
    cues: list[Cue]


SRT_CONTENT_TYPE = "application/x-subrip; charset=utf-8"
VTT_CONTENT_TYPE = "text/vtt; charset=utf-8"


def store_captions(cues: Sequence[Cue], video_sha256: str, work: Path, store: ArtifactStore) -> Captions:
    srt, vtt = work / "captions.srt", work / "captions.vtt"
    srt.write_text(to_srt(cues), encoding="utf-8")
    vtt.write_text(to_webvtt(cues), encoding="utf-8")
    stored_srt = store.put_sidecar(srt, video_sha256=video_sha256, suffix=".srt", content_type=SRT_CONTENT_TYPE)
    stored_vtt = store.put_sidecar(vtt, video_sha256=video_sha256, suffix=".vtt", content_type=VTT_CONTENT_TYPE)
    return Captions(srt=stored_srt.url, vtt=stored_vtt.url)


@dataclass(frozen=True)
class CarriedCaptions:
    """The inputs' captions on the output's timeline; `track_language`: the soft track an input had, if any."""

    cues: list[Cue]
    track_language: str | None


def carried_captions(call: OperationCall, starts: Sequence[float]) -> CarriedCaptions | None:
    """The inputs' cues moved to where each starts in the output (`starts`), cut where the next starts.

    Without this, merge and reframe lost the subtitle track of `burn: false` videos, and every sidecar.
    """
    cues: list[Cue] = []
    language: str | None = None
    for index, (result, path, start) in enumerate(zip(call.input_results, call.inputs, starts, strict=True)):
        if result.captions is None:
            continue
        ends = starts[index + 1] if index + 1 < len(starts) else start + result.duration
        for cue in _stored_cues(result, index, call):
            begin, end = cue.start + start, min(cue.end + start, ends)
            if end > begin:
                cues.append(Cue(round(begin, 3), round(end, 3), cue.text))
        language = language or probe(path).subtitle_language
    if not cues:
        return None
    call.log(f"carried {len(cues)} caption cue(s) from the inputs" + (" in a subtitle track" if language else ""))
    return CarriedCaptions(cues, language)


def _stored_cues(result: VideoResult, index: int, call: OperationCall) -> list[Cue]:
    key = call.env.store.key_for(result.sha256, ".srt")
    srt = from_store(call.env.store, key, call.work / f"input{index}.srt")
    if srt is None:
        raise MediaError(
            f"{call.node_id}: input {index + 1} has captions, but its SRT ({key}) is not in the artifact store"
        )
    return parse_srt(srt.read_text(encoding="utf-8"))


def untracked_output(call: OperationCall, carried: CarriedCaptions | None) -> Path:
    """Where the operation writes: the node's output, unless a subtitle track is added to it afterwards."""
    return call.work / "untracked.mp4" if carried is not None and carried.track_language else call.out


def keep_captions(call: OperationCall, carried: CarriedCaptions | None) -> Captioned | None:
    """The carried captions as the output's own: its subtitle track (if an input had one) and sidecars."""
    if carried is None:
        return None
    if carried.track_language:
        add_subtitle_track(
            call.work / "untracked.mp4",
            call.out,
            cues=carried.cues,
            language=carried.track_language,
            timeout=call.env.timeout,
        )
    return Captioned(None, carried.cues)


def generate_video(params: GenerateVideoParams, call: OperationCall) -> str:
    width, height = dimensions_for(params.aspect_ratio, params.resolution)
    generator = video_generator(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    call.log(f"generating {params.duration}s {width}x{height} with provider {generator.name}")
    request = GenerationRequest(
        prompt=params.prompt,
        duration=params.duration,
        width=width,
        height=height,
        aspect_ratio=params.aspect_ratio,
        # None given: one derived from the lineage, so the same node renders the same clip.
        seed=params.seed if params.seed is not None else int(call.lineage[:8], 16) % (2**31),
        model=params.model,
    )
    generator.generate(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return generator.name


def lip_sync(params: LipSyncParams, call: OperationCall) -> str:
    audio = call.work / "audio"
    size = fetch_to_file(params.audio_url, audio, allowed=call.env.allowed_hosts)
    call.log(f"fetched {size} bytes of audio")
    syncer = lip_syncer(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    request = LipSyncRequest(
        video=call.inputs[0], video_url=call.input_urls[0], audio=audio, audio_url=params.audio_url, model=params.model
    )
    syncer.lip_sync(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return syncer.name


def merge(params: MergeParams, call: OperationCall) -> Captioned | None:
    # Where each input starts in the merged video: a transition overlaps it with the one before.
    overlap = params.transition_duration if params.transition != "cut" and len(call.inputs) > 1 else 0.0
    starts = [sum(result.duration for result in call.input_results[:i]) - i * overlap for i in range(len(call.inputs))]
    carried = carried_captions(call, starts)
    strategy = merge_videos(
        call.inputs,
        untracked_output(call, carried),
        transition=params.transition,
        transition_duration=params.transition_duration,
        timeout=call.env.timeout,
    )
    call.log(f"merged {len(call.inputs)} inputs with {params.transition} ({strategy})")
    return keep_captions(call, carried)


def reframe(params: ReframeParams, call: OperationCall) -> Captioned | None:
    carried = carried_captions(call, [0.0])
    reframe_video(
        call.inputs[0],
        untracked_output(call, carried),
        aspect_ratio=params.aspect_ratio,
        mode=params.mode,
        timeout=call.env.timeout,
    )
    return keep_captions(call, carried)


def add_subtitles(params: AddSubtitlesParams, call: OperationCall) -> Captioned:
    provider = None
    if params.from_speech:
        cues, provider = _speech_cues(params, call)
    else:
        cues = _cues(params, call.inputs[0])
    style = params.style
    if params.burn:
        burn_subtitles(
            call.inputs[0],
            call.out,
            cues=cues,
            font_size=style.font_size,
            position=style.position,
            highlight=style.highlight,
            timeout=call.env.timeout,
        )
        call.log(f"burned {len(cues)} subtitle cue(s)" + (" as karaoke" if style.highlight == "word" else ""))
    else:
        add_subtitle_track(call.inputs[0], call.out, cues=cues, language=params.language, timeout=call.env.timeout)
        call.log(f"added a subtitle track of {len(cues)} cue(s); the picture is untouched")
    return Captioned(provider, cues)


def _speech_cues(params: AddSubtitlesParams, call: OperationCall) -> tuple[list[Cue], str]:
    assert params.language is not None  # the params' validation: speech needs a language
    transcriber = speech_transcriber(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    request = TranscriptionRequest(
        media=call.inputs[0], media_url=call.input_urls[0], language=params.language, model=params.model
    )
    words = transcriber.transcribe(request, timeout=call.env.timeout, ledger=call.ledger)
    if not words:
        raise MediaError(
            f"{call.node_id}: no speech recognised in its input video (language {params.language!r}, "
            f"provider {transcriber.name}); give 'text', 'cues' or 'srt' instead, or check the video's audio"
        )
    call.log(f"{transcriber.name} recognised {len(words)} word(s) of {params.language} speech")
    return cues_from_words(words), transcriber.name


def _cues(params: AddSubtitlesParams, video: Path) -> list[Cue]:
    if params.text is not None:
        return [Cue(0.0, probe(video).duration, params.text)]
    if params.cues is not None:
        return [Cue(cue.start, cue.end, cue.text) for cue in params.cues]
    assert params.srt is not None
    return parse_srt(params.srt)


# Each takes its operation's params and returns the provider used (None: FFmpeg only), with cues if captioned.
HANDLERS: dict[Operation, Callable[[Any, OperationCall], str | Captioned | None]] = {
    Operation.GENERATE_VIDEO: generate_video,
    Operation.MERGE: merge,
    Operation.LIP_SYNC: lip_sync,
    Operation.ADD_SUBTITLES: add_subtitles,
    Operation.REFRAME: reframe,
}
