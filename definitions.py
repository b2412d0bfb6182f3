"""Dagster entry point: `dagster dev -f definitions.py` or `-w workspace.yaml`."""

from video_pipelines.orchestration.definitions import defs

__all__ = ["defs"]
