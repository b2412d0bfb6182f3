"""What a plan node's video should be, for the media checks (`operations.checks`).

Sound: `local` generateVideo renders a tone, remote models may be silent; an input the plan does not
hold (a base's node) is not expected to have any.
"""

from __future__ import annotations

from collections.abc import Sequence

from video_pipelines.operations.checks import MediaExpectations
from video_pipelines.plan import Plan, PlanNode, execution_order
from video_pipelines.plan.durations import output_duration
from video_pipelines.plan.params import AnyParams, GenerateVideoParams, LipSyncParams, Operation, ReframeParams
from video_pipelines.plan.results import VideoResult


def audio_expected(plan: Plan) -> dict[str, bool]:
    expected: dict[str, bool] = {}
    for node in execution_order(plan):
        provider = node.params.get("provider", "local")
        if node.operation is Operation.GENERATE_VIDEO:
            expected[node.id] = provider == "local"
        elif node.operation is Operation.LIP_SYNC:
            expected[node.id] = True
        else:
            expected[node.id] = any(expected.get(dep, False) for dep in node.depends_on)
    return expected


def expectations_for(
    node: PlanNode, params: AnyParams, inputs: Sequence[VideoResult], *, audio: bool
) -> MediaExpectations:
    duration = output_duration(params, [result.duration for result in inputs])
    if isinstance(params, LipSyncParams) and params.provider != "local":
        duration = None  # remote lip-sync models may follow the voice's length rather than the video's
    if isinstance(params, GenerateVideoParams | ReframeParams):
        aspect_ratio: str | None = params.aspect_ratio
    else:
        aspect_ratio = inputs[0].aspect_ratio if inputs else None
    return MediaExpectations(duration=duration, aspect_ratio=aspect_ratio, audio=audio)


def subject(node: PlanNode) -> str:
    return f"{node.id} ({node.operation.value})"
