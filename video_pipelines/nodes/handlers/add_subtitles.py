"""addSubtitles: cues given (text, cues, SRT) or transcribed from speech, burned in or as a track."""

from __future__ import annotations

from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.operations import Cue, add_subtitle_track, burn_subtitles, parse_srt, probe
from video_pipelines.plan.params import AddSubtitlesParams
from video_pipelines.providers import TranscriptionRequest, speech_transcriber
from video_pipelines.speech.cues import cues_from_words


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
    return cues_from_words(words, params.language), transcriber.name


def _cues(params: AddSubtitlesParams, video: Path) -> list[Cue]:
    if params.text is not None:
        return [Cue(0.0, probe(video).duration, params.text)]
    if params.cues is not None:
        return [Cue(cue.start, cue.end, cue.text) for cue in params.cues]
    assert params.srt is not None
    return parse_srt(params.srt)
