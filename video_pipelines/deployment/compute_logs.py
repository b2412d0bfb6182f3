"""Runs' stdout and stderr, kept for the Dagster UI, without two processes per run.

Dagster's `LocalComputeLogManager` mirrors each captured stream back to the process's own stream through a
`tail -F` process and a Python watcher process that kills the tail if the run's process dies: about 0.1 s of
CPU per run, and a `tail` left behind when a run thread ends without the capture's cleanup. A run here says
what it does through its event log; its raw output only needs to reach the UI, so this manager writes the
streams to the same files the UI reads and mirrors nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file


class FileComputeLogManager(LocalComputeLogManager):
    """`LocalComputeLogManager` (same files, same UI) that captures a run's streams into files only."""

    @classmethod
    def config_type(cls) -> dict[str, dg.Field]:
        # The default folder is Dagster's own: $DAGSTER_HOME/storage.
        return {
            "base_dir": dg.Field(dg.StringSource, is_required=False),
            "polling_timeout": dg.Field(dg.Float, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> FileComputeLogManager:
        config = dict(config_value)
        base_dir = config.pop("base_dir", None) or str(Path(os.environ["DAGSTER_HOME"]) / "storage")
        return cls(base_dir=base_dir, inst_data=inst_data, **config)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        ensure_file(outpath)  # and its folders
        ensure_file(errpath)
        with redirect_to_file(sys.stdout, outpath), redirect_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        # The UI's sign that the capture is complete (`complete_artifact_path`, which is untyped).
        touch_file(self.get_captured_local_path(log_key, "complete"))
