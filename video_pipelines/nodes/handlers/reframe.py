"""reframe: the input to another aspect ratio; its captions carried."""

from __future__ import annotations

from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.nodes.handlers.captions import carried_captions, keep_captions, untracked_output
from video_pipelines.operations import reframe_video
from video_pipelines.plan.params import ReframeParams


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
