"""merge: the inputs one after another, cut or with a transition; their captions carried."""

from __future__ import annotations

from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.nodes.handlers.captions import carried_captions, keep_captions, untracked_output
from video_pipelines.operations import merge_videos
from video_pipelines.plan.params import MergeParams


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
