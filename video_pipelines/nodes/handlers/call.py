"""What an operation handler works with, and what a captioning one returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from video_pipelines.nodes.environment import NodeEnvironment
from video_pipelines.operations import Cue
from video_pipelines.plan.results import VideoResult
from video_pipelines.providers import JobLedger

Log = Callable[[str], None]


@dataclass(frozen=True)
class OperationCall:
    """What an operation handler works with besides its params: local inputs, the output, the deployment."""

    node_id: str
    inputs: list[Path]
    input_results: Sequence[VideoResult]
    input_urls: list[str]
    out: Path
    work: Path
    env: NodeEnvironment
    lineage: str
    log: Log
    ledger: JobLedger


@dataclass(frozen=True)
class Captioned:
    """A captioned output: its cues, and who transcribed them (None: given, or carried from inputs)."""

    provider: str | None
    cues: list[Cue]
