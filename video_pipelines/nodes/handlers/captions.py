"""Captions a node's output carries: stored as SRT/WebVTT sidecars, and carried through merge and reframe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.nodes.environment import from_store
from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.operations import Cue, add_subtitle_track, parse_srt, probe, to_srt, to_webvtt
from video_pipelines.plan.results import Captions, VideoResult
from video_pipelines.storage import ArtifactStore

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
