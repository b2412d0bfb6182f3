"""One module per operation, each with its handler; `HANDLERS` maps an operation to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from video_pipelines.nodes.handlers.add_subtitles import add_subtitles
from video_pipelines.nodes.handlers.call import Captioned, OperationCall
from video_pipelines.nodes.handlers.generate_video import generate_video
from video_pipelines.nodes.handlers.lip_sync import lip_sync
from video_pipelines.nodes.handlers.merge import merge
from video_pipelines.nodes.handlers.reframe import reframe
from video_pipelines.plan.params import Operation

# Each takes its operation's params and returns the provider used (None: FFmpeg only), with cues if captioned.
HANDLERS: dict[Operation, Callable[[Any, OperationCall], str | Captioned | None]] = {
    Operation.GENERATE_VIDEO: generate_video,
    Operation.MERGE: merge,
    Operation.LIP_SYNC: lip_sync,
    Operation.ADD_SUBTITLES: add_subtitles,
    Operation.REFRAME: reframe,
}
