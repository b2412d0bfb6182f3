"""lipSync: the input video's mouth moved to a voice fetched from `audioUrl`."""

from __future__ import annotations

from video_pipelines.net import fetch_to_file
from video_pipelines.nodes.handlers.call import OperationCall
from video_pipelines.plan.params import LipSyncParams
from video_pipelines.providers import LipSyncRequest, lip_syncer


def lip_sync(params: LipSyncParams, call: OperationCall) -> str:
    audio = call.work / "audio"
    size = fetch_to_file(params.audio_url, audio, allowed=call.env.allowed_hosts)
    call.log(f"fetched {size} bytes of audio")
    syncer = lip_syncer(params.provider, allowed=call.env.allowed_hosts, remote=call.env.remote)
    request = LipSyncRequest(
        video=call.inputs[0], video_url=call.input_urls[0], audio=audio, audio_url=params.audio_url, model=params.model
    )
    syncer.lip_sync(request, call.out, timeout=call.env.timeout, ledger=call.ledger)
    return syncer.name
