"""Running one plan node: fetch its inputs, run the operation, probe, check and store the result.

This is the plain-Python body of an `execute_plan` step; the Dagster op around it only
logs and records. Results are probed from the written file, never assumed. With `checks`,
the media checks (`operations.checks`) look at the written file before it is stored, reusing
its probe: a video that fails a blocking check is never stored, and one that passes is not
fetched back from the store (S3) to be checked.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from video_pipelines.errors import MediaError, PlanValidationError, StorageError
from video_pipelines.net import AllowedHosts, fetch_to_file
from video_pipelines.nodes.checks import expectations_for, subject
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
from video_pipelines.operations.checks import CheckName, CheckOutcome, blocking_failure, check_media
from video_pipelines.plan.model import PlanNode
from video_pipelines.plan.params import (
    AddSubtitlesParams,
    AnyParams,
    GenerateVideoParams,
    LipSyncParams,
    MergeParams,
    Operation,
    ReframeParams,
)
from video_pipelines.plan.results import Captions, VideoResult, aspect_ratio_name
from video_pipelines.providers import (
    GenerationRequest,
    JobLedger,
    LipSyncRequest,
    NoLedger,
    RemoteFactory,
    TranscriptionRequest,
    lip_syncer,
    speech_transcriber,
    video_generator,
)
from video_pipelines.providers.pricing import DEFAULT_MODELS, PricingTable
from video_pipelines.speech.cues import cues_from_words
from video_pipelines.storage import ArtifactStore
from video_pipelines.storage.digest import file_sha256

Log = Callable[[str], None]

SRT_CONTENT_TYPE = "application/x-subrip; charset=utf-8"
VTT_CONTENT_TYPE = "text/vtt; charset=utf-8"


def _ignore(_message: str) -> None:
    return None


@dataclass(frozen=True)
class NodeEnvironment:
    """What a node needs from the deployment: where results go and which hosts it may fetch from."""

    store: ArtifactStore
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts.from_env)
    timeout: float | None = 1800.0
    workdir: Path | None = None
    pricing: PricingTable = field(default_factory=PricingTable.from_env)
    # Configured remote providers by name (the Dagster resources); others come from the environment.
    remote: Mapping[str, RemoteFactory] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeRun:
    result: VideoResult
    provider: str | None
    seconds: float
    cost_usd: float = 0.0
    model: str | None = None
    # Not computed here: another execution's result of the same lineage (`executions.node_cache`).
    reused_from: str | None = None
    # The media checks of the video made here (none when not asked for, or reused).
    checks: list[CheckOutcome] = field(default_factory=list)


@dataclass(frozen=True)
class NodeChecks:
    """The media checks to run on a node's video: whether it should have sound (from the plan,
    `node_checks.audio_expected`) and which failed checks fail the node."""

    audio: bool
    blocking: frozenset[CheckName]


def seed_for(params: GenerateVideoParams, lineage: str) -> int:
    """The given seed, or one derived from the lineage so the same node renders the same clip."""
    return params.seed if params.seed is not None else int(lineage[:8], 16) % (2**31)


def run_node(
    node: PlanNode,
    *,
    inputs: Sequence[VideoResult],
    upstream: Mapping[str, VideoResult],
    lineage: str,
    env: NodeEnvironment,
    log: Log = _ignore,
    ledger: JobLedger | None = None,
    checks: NodeChecks | None = None,
) -> NodeRun:
    """Run `node` on `inputs` (its input videos in dependsOn order) and store the result.

    `upstream` holds the results its `{{refs}}` may name. With `checks`, the video is checked
    first; a blocking failure raises `MediaChecksFailed` and nothing is stored.
    """
    try:
        params = node.typed_params({node_id: result.to_wire() for node_id, result in upstream.items()})
    except ValidationError as exc:
        raise PlanValidationError(
            [f"{node.id}.params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from None
    with tempfile.TemporaryDirectory(prefix=f"vp-{node.id}-", dir=env.workdir) as tmp:
        work = Path(tmp)
        input_paths = [local_copy(result, work / f"input{i}.mp4", env) for i, result in enumerate(inputs)]
        out = work / "output.mp4"
        call = _OperationCall(
            node_id=node.id,
            inputs=input_paths,
            input_results=inputs,
            input_urls=[result.url for result in inputs],
            out=out,
            work=work,
            env=env,
            lineage=lineage,
            log=log,
            ledger=ledger or NoLedger(),
        )
        started = time.perf_counter()
        done = _HANDLERS[node.operation](params, call)
        provider = done if not isinstance(done, _Captioned) else done.provider
        seconds = time.perf_counter() - started
        info = probe(out)
        outcomes: list[CheckOutcome] = []
        if checks is not None:
            expected = expectations_for(node, params, inputs, audio=checks.audio)
            outcomes = check_media(
                out, expected, subject=subject(node), blocking=checks.blocking, info=info, timeout=env.timeout
            )
            failure = blocking_failure(outcomes)
            if failure is not None:
                raise failure
        digest = file_sha256(out)
        stored = env.store.put_file(out, sha256=digest)
        captions = _store_captions(done.cues, digest, work, env.store) if isinstance(done, _Captioned) else None
    result = VideoResult(
        url=stored.url,
        duration=round(info.duration, 3),
        width=info.width,
        height=info.height,
        aspect_ratio=aspect_ratio_name(info.width, info.height),
        size_bytes=info.size_bytes,
        sha256=digest,
        captions=captions,
    )
    model = _model_used(node.operation, params, provider)
    cost = env.pricing.cost(provider, model, result.duration) if provider else 0.0
    return NodeRun(
        result=result, provider=provider, seconds=round(seconds, 3), cost_usd=cost, model=model, checks=outcomes
    )


def _model_used(operation: Operation, params: AnyParams, provider: str | None) -> str | None:
    # A remote provider's model: generation, lip-sync, or addSubtitles's speech-to-text.
    if provider is None or provider == "local":
        return None
    if not isinstance(params, GenerateVideoParams | LipSyncParams | AddSubtitlesParams):
        return None
    return params.model or DEFAULT_MODELS.get((operation, provider))


def local_copy(result: VideoResult, dest: Path, env: NodeEnvironment) -> Path:
    """A local file holding `result`'s video: the store's own file when local, else a download."""
    stored = _from_store(env.store, env.store.key_for(result.sha256), dest)
    if stored is not None:
        return stored
    fetch_to_file(result.url, dest, allowed=env.allowed_hosts)
    return dest


def still_stored(store: ArtifactStore, warn: Callable[[str], None]) -> Callable[[VideoResult], bool]:
    """Whether `store` still holds a video made earlier; when storage cannot say, it is taken as held.

    Taken as held because the node that takes it fetches it with its own retries (`local_copy`),
    and fails naming it if it is gone: an outage must not make work (or a provider's bill) again.
    """

    def stored(result: VideoResult) -> bool:
        try:
            return store.exists(store.key_for(result.sha256))
        except StorageError as exc:
            warn(f"could not check that {result.url} is still stored ({exc}); taken as stored")
            return True

    return stored


def _from_store(store: ArtifactStore, key: str, dest: Path) -> Path | None:
    """The store's own file for `key` when it is local, else `dest` downloaded from it; None: not stored."""
    local = store.local_path(key)
    if local is not None and local.exists():
        return local
    if store.exists(key):
        return store.fetch_to(key, dest)
    return None


@dataclass(frozen=True)
class _OperationCall:
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


def _generate_video(params: GenerateVideoParams, call: _OperationCall) -> str:
    width, height = dimensions_for(params.aspect_ratio, params.resolution)
    generator = video_generator(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    call.log(f"generating {params.duration}s {width}x{height} with provider {generator.name}")
    request = GenerationRequest(
        prompt=params.prompt,
        duration=params.duration,
        width=width,
        height=height,
        aspect_ratio=params.aspect_ratio,
        seed=seed_for(params, call.lineage),
        model=params.model,
    )
    generator.generate(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return generator.name


def _merge(params: MergeParams, call: _OperationCall) -> _Captioned | None:
    # Where each input starts in the merged video: a transition overlaps it with the one before.
    overlap = params.transition_duration if params.transition != "cut" and len(call.inputs) > 1 else 0.0
    starts = [sum(result.duration for result in call.input_results[:i]) - i * overlap for i in range(len(call.inputs))]
    carried = _carried_captions(call, starts)
    strategy = merge_videos(
        call.inputs,
        _untracked_output(call, carried),
        transition=params.transition,
        transition_duration=params.transition_duration,
        timeout=call.env.timeout,
    )
    call.log(f"merged {len(call.inputs)} inputs with {params.transition} ({strategy})")
    return _keep_captions(call, carried)


def _lip_sync(params: LipSyncParams, call: _OperationCall) -> str:
    audio = call.work / "audio"
    size = fetch_to_file(params.audio_url, audio, allowed=call.env.allowed_hosts)
    call.log(f"fetched {size} bytes of audio")
    syncer = lip_syncer(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    request = LipSyncRequest(
        video=call.inputs[0], video_url=call.input_urls[0], audio=audio, audio_url=params.audio_url, model=params.model
    )
    syncer.lip_sync(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return syncer.name


@dataclass(frozen=True)
class _Captioned:
    """A captioned output: who transcribed the speech for it (None: the cues were given, or carried
    from captioned inputs by merge or reframe) and its cues."""

    provider: str | None
    cues: list[Cue]


def _add_subtitles(params: AddSubtitlesParams, call: _OperationCall) -> _Captioned:
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
    return _Captioned(provider, cues)


def _speech_cues(params: AddSubtitlesParams, call: _OperationCall) -> tuple[list[Cue], str]:
    """Cues of the input video's speech, and who transcribed it."""
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


def _store_captions(cues: Sequence[Cue], video_sha256: str, work: Path, store: ArtifactStore) -> Captions:
    """The cues stored as SRT and WebVTT beside the video they caption."""
    srt, vtt = work / "captions.srt", work / "captions.vtt"
    srt.write_text(to_srt(cues), encoding="utf-8")
    vtt.write_text(to_webvtt(cues), encoding="utf-8")
    stored_srt = store.put_sidecar(srt, video_sha256=video_sha256, suffix=".srt", content_type=SRT_CONTENT_TYPE)
    stored_vtt = store.put_sidecar(vtt, video_sha256=video_sha256, suffix=".vtt", content_type=VTT_CONTENT_TYPE)
    return Captions(srt=stored_srt.url, vtt=stored_vtt.url)


def _reframe(params: ReframeParams, call: _OperationCall) -> _Captioned | None:
    carried = _carried_captions(call, [0.0])
    reframe_video(
        call.inputs[0],
        _untracked_output(call, carried),
        aspect_ratio=params.aspect_ratio,
        mode=params.mode,
        timeout=call.env.timeout,
    )
    return _keep_captions(call, carried)


@dataclass(frozen=True)
class _CarriedCaptions:
    """The inputs' captions on the output's timeline, and the language of the soft subtitle track
    an input had (None: the captions were burned in, or given as sidecars only)."""

    cues: list[Cue]
    track_language: str | None


def _carried_captions(call: _OperationCall, starts: Sequence[float]) -> _CarriedCaptions | None:
    """The captions of the inputs that have them, each input's cues moved to where it starts in the
    output (`starts`) and cut where the next input starts; None when no input has captions.

    merge and reframe keep the words on screen in step: without this, a reframed or merged
    `burn: false` video lost its subtitle track, and every result lost its SRT/WebVTT sidecars.
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
    return _CarriedCaptions(cues, language)


def _stored_cues(result: VideoResult, index: int, call: _OperationCall) -> list[Cue]:
    """The cues of a captioned input, read from its SRT sidecar in the store."""
    key = call.env.store.key_for(result.sha256, ".srt")
    srt = _from_store(call.env.store, key, call.work / f"input{index}.srt")
    if srt is None:
        raise MediaError(
            f"{call.node_id}: input {index + 1} has captions, but its SRT ({key}) is not in the artifact store"
        )
    return parse_srt(srt.read_text(encoding="utf-8"))


def _untracked_output(call: _OperationCall, carried: _CarriedCaptions | None) -> Path:
    """Where the operation writes: the node's output, unless a subtitle track is added to it afterwards."""
    return call.work / "untracked.mp4" if carried is not None and carried.track_language else call.out


def _keep_captions(call: _OperationCall, carried: _CarriedCaptions | None) -> _Captioned | None:
    """The carried captions as the output's own: its subtitle track (when an input had one) and, through
    the returned cues, its SRT/WebVTT sidecars."""
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
    return _Captioned(None, carried.cues)


# Each handler takes the params class `PARAMS_MODELS` parses its operation into, and returns
# the provider it used (None for FFmpeg-only operations); the ones that caption their output
# (addSubtitles, and merge and reframe of captioned inputs) return the cues as well.
_HANDLERS: dict[Operation, Callable[[Any, _OperationCall], str | _Captioned | None]] = {
    Operation.GENERATE_VIDEO: _generate_video,
    Operation.MERGE: _merge,
    Operation.LIP_SYNC: _lip_sync,
    Operation.ADD_SUBTITLES: _add_subtitles,
    Operation.REFRAME: _reframe,
}


def _cues(params: AddSubtitlesParams, video: Path) -> list[Cue]:
    if params.text is not None:
        return [Cue(0.0, probe(video).duration, params.text)]
    if params.cues is not None:
        return [Cue(cue.start, cue.end, cue.text) for cue in params.cues]
    assert params.srt is not None
    return parse_srt(params.srt)
