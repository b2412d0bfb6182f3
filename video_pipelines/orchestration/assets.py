"""Asset specs: one per operation kind, so the catalog explains what each video is."""

from __future__ import annotations

import dagster as dg

from video_pipelines.plan import Operation

_DESCRIPTIONS = {
    Operation.GENERATE_VIDEO: "Clips generated from a prompt (local FFmpeg render or an AI provider).",
    Operation.MERGE: "Videos merged from several inputs with cuts, crossfades or fades.",
    Operation.LIP_SYNC: "Videos whose audio track was replaced by, and lip-synced to, a new voice track.",
    Operation.ADD_SUBTITLES: "Videos with subtitles burned in.",
    Operation.REFRAME: "Videos reframed to another aspect ratio (crop, pad or blurred background).",
}


def asset_key_for(operation: Operation) -> dg.AssetKey:
    return dg.AssetKey(["video", operation.snake_name])


VIDEO_ASSET_SPECS = [
    dg.AssetSpec(
        key=asset_key_for(operation),
        description=description + " One materialization per executed plan node; metadata holds the result.",
        group_name="video_pipelines",
        kinds={"video"},
    )
    for operation, description in _DESCRIPTIONS.items()
]
