"""The contract every provider implements. A remote job costs money, so a node never pays twice:
the job id goes to the `JobLedger` before waiting, and a retried step resumes that job."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from video_pipelines.speech import Word


class JobLedger(Protocol):
    """Where a node remembers the provider job it started (the Dagster shell keeps it on the run)."""

    def recall(self) -> str | None:
        """The job id remembered for this node, if any."""

    def remember(self, job_id: str) -> None:
        """Remember `job_id` for this node, before waiting on it."""


# Where providers reach our API (`POST /api/providers/{provider}/webhook`); unset: waiting jobs are polled.
PUBLIC_URL_ENV = "VIDEO_PIPELINES_PUBLIC_URL"
# The providers that call back when a job ends (their verifiers: `callbacks.py`); Vertex's operations are polled.
CALLING_BACK = ("replicate", "fal")


def provider_webhook_url(provider: str) -> str | None:
    """The URL `provider` calls when one of our jobs ends, where the deployment has a public URL and it calls back."""
    public = os.environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/")
    return f"{public}/api/providers/{provider}/webhook" if public and provider in CALLING_BACK else None


class ProviderJobs(Protocol):
    """A provider whose jobs the deployment can follow without the run that started them (parked nodes)."""

    name: str

    def job_finished(self, job_id: str) -> bool:
        """Whether the job ended (succeeded, failed or canceled): its continuation collects or reports it."""

    def cancel_job(self, job_id: str) -> bool:
        """Ask the provider to stop the job; True when it accepted."""


class NoLedger:
    """A ledger that remembers nothing (plain calls, tests of other parts)."""

    def recall(self) -> str | None:
        return None

    def remember(self, job_id: str) -> None:
        return None


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    duration: float
    width: int
    height: int
    aspect_ratio: str  # "16:9", "9:16", "1:1", "4:5"
    seed: int
    model: str | None

    def common_inputs(self, *, duration_as_text: bool) -> dict[str, str | int]:
        """The text-to-video inputs most video models take, by their common names (fal's: duration as text)."""
        seconds = max(1, round(self.duration))
        duration = str(seconds) if duration_as_text else seconds
        return {"prompt": self.prompt, "duration": duration, "aspect_ratio": self.aspect_ratio, "seed": self.seed}


@dataclass(frozen=True)
class LipSyncRequest:
    video: Path  # the input video as a local file
    video_url: str  # where it is stored (http(s) when the store is S3; file:// for a local store)
    audio: Path  # the voice track, already fetched
    audio_url: str  # the voice track's http(s) URL as the plan gave it
    model: str | None


@dataclass(frozen=True)
class TranscriptionRequest:
    media: Path  # the input video as a local file: its audio track is what is transcribed
    media_url: str  # where it is stored (http(s) when the store is S3 or served; file:// for a local store)
    language: str  # the spoken language, ISO 639-1 ("en")
    model: str | None


class VideoGenerator(Protocol):
    name: str

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        """Write the generated clip to `out` (an MP4 the caller probes)."""


class LipSyncer(Protocol):
    name: str

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        """Write `request.video` lip-synced to `request.audio` to `out`."""


class SpeechTranscriber(Protocol):
    name: str

    def transcribe(self, request: TranscriptionRequest, *, timeout: float | None, ledger: JobLedger) -> list[Word]:
        """The words spoken in `request.media`, in order, with their times in seconds."""
