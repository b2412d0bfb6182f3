"""Running one plan node: fetch inputs, run its operation's handler, probe, check, store.

The media checks look at the written file before it is stored, reusing its probe: a video failing a
blocking check is never stored, and one that passes is not fetched back from S3 to be checked.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from video_pipelines.errors import PlanValidationError
from video_pipelines.nodes.checks import expectations_for, subject
from video_pipelines.nodes.environment import NodeEnvironment, local_copy
from video_pipelines.nodes.handlers import HANDLERS
from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.nodes.handlers.captions import store_captions
from video_pipelines.operations import probe
from video_pipelines.operations.checks import CheckName, CheckOutcome, blocking_failure, check_media
from video_pipelines.plan.model import PlanNode
from video_pipelines.plan.params import AddSubtitlesParams, AnyParams, GenerateVideoParams, LipSyncParams, Operation
from video_pipelines.plan.results import VideoResult, aspect_ratio_name
from video_pipelines.providers import JobLedger, NoLedger
from video_pipelines.providers.pricing import DEFAULT_MODELS
from video_pipelines.storage.digest import file_sha256

Log = Callable[[str], None]


@dataclass(frozen=True)
class NodeRun:
    result: VideoResult
    provider: str | None
    seconds: float
    cost_usd: float = 0.0
    model: str | None = None
    # Not computed here: another execution's result of the same lineage (`nodes.cache`).
    reused_from: str | None = None
    # The media checks of the video made here (none when not asked for, or reused).
    checks: list[CheckOutcome] = field(default_factory=list)


@dataclass(frozen=True)
class NodeChecks:
    """The media checks to run on a node's video: whether it should have sound, which failures fail the node."""

    audio: bool
    blocking: frozenset[CheckName]


def run_node(
    node: PlanNode,
    *,
    inputs: Sequence[VideoResult],
    upstream: Mapping[str, VideoResult],
    lineage: str,
    env: NodeEnvironment,
    log: Log = lambda _message: None,
    ledger: JobLedger | None = None,
    checks: NodeChecks | None = None,
    params: AnyParams | None = None,
) -> NodeRun:
    """Run `node` on `inputs` (dependsOn order) and store the result; `upstream`: what its `{{refs}}` may name."""
    params = typed_params(node, upstream) if params is None else params
    with tempfile.TemporaryDirectory(prefix=f"vp-{node.id}-", dir=env.workdir) as tmp:
        work = Path(tmp)
        call = OperationCall(
            node_id=node.id,
            inputs=[local_copy(result, work / f"input{i}.mp4", env) for i, result in enumerate(inputs)],
            input_results=inputs,
            input_urls=[result.url for result in inputs],
            out=work / "output.mp4",
            work=work,
            env=env,
            lineage=lineage,
            log=log,
            ledger=ledger or NoLedger(),
        )
        started = time.perf_counter()
        done = HANDLERS[node.operation](params, call)
        seconds = time.perf_counter() - started
        info = probe(call.out)
        outcomes: list[CheckOutcome] = []
        if checks is not None:
            expected = expectations_for(node, params, inputs, audio=checks.audio)
            outcomes = check_media(
                call.out, expected, subject=subject(node), blocking=checks.blocking, info=info, timeout=env.timeout
            )
            if (failure := blocking_failure(outcomes)) is not None:
                raise failure
        digest = file_sha256(call.out)
        stored = env.store.put_file(call.out, sha256=digest)
        captions = store_captions(done.cues, digest, work, env.store) if isinstance(done, Captioned) else None
    provider = done.provider if isinstance(done, Captioned) else done
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


def typed_params(node: PlanNode, upstream: Mapping[str, VideoResult]) -> AnyParams:
    try:
        return node.typed_params({node_id: result.to_wire() for node_id, result in upstream.items()})
    except ValidationError as exc:
        raise PlanValidationError(
            [f"{node.id}.params.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from None


def _model_used(operation: Operation, params: AnyParams, provider: str | None) -> str | None:
    # A remote provider's model: generation, lip-sync, or addSubtitles's speech-to-text.
    if provider is None or provider == "local":
        return None
    if not isinstance(params, GenerateVideoParams | LipSyncParams | AddSubtitlesParams):
        return None
    return params.model or DEFAULT_MODELS.get((operation, provider))
