"""lipSync offline: put a new audio track on a video, fitted to the video's length."""

from __future__ import annotations

from pathlib import Path

from video_pipelines.operations.common import SAMPLE_RATE, STEREO_48K, atomic_output, mp4_output
from video_pipelines.operations.ffmpeg import check_timeout, probe, probe_audio, run_ffmpeg


def replace_audio(video: Path, audio: Path, out: Path, *, timeout: float | None = None) -> None:
    """Replace `video`'s audio with `audio`, cut or padded to the video's length; H.264 yuv420p video is copied."""
    check_timeout(timeout)
    info = probe(video)
    probe_audio(audio)
    samples = round(info.duration * SAMPLE_RATE)
    chain = f"[1:a:0]asetpts=PTS-STARTPTS,{STEREO_48K},apad,atrim=end_sample={samples}[aout]"
    copy_video = info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    with atomic_output(out) as partial:
        run_ffmpeg(
            [
                "-i", str(video), "-i", str(audio),
                "-filter_complex", chain,
                "-map", "0:v:0", "-map", "[aout]",
                *mp4_output(partial, copy_video=copy_video),
            ],
            description=f"lipSync: putting the audio of {audio.name} on {video.name}",
            timeout=timeout,
        )  # fmt: skip
