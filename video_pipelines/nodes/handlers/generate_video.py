"""generateVideo: a clip from a prompt, by the provider the params name."""

from __future__ import annotations

from video_pipelines.nodes.handlers.call import OperationCall
from video_pipelines.operations import dimensions_for
from video_pipelines.plan.params import GenerateVideoParams
from video_pipelines.providers import GenerationRequest, video_generator


def seed_for(params: GenerateVideoParams, lineage: str) -> int:
    """The given seed, or one derived from the lineage so the same node renders the same clip."""
    return params.seed if params.seed is not None else int(lineage[:8], 16) % (2**31)


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
        seed=seed_for(params, call.lineage),
        model=params.model,
    )
    generator.generate(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return generator.name
