"""Artifact storage: produced videos, content-addressed by SHA-256, in a folder or an S3 bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.storage.base import ArtifactStore, StoredArtifact
from video_pipelines.storage.digest import file_sha256
from video_pipelines.storage.factory import ARTIFACTS_BASE_URL_ENV, STORAGE_URL_ENV, store_from_env, store_from_url
from video_pipelines.storage.local import LocalArtifactStore

if TYPE_CHECKING:
    from video_pipelines.storage.s3 import S3ArtifactStore


def __getattr__(name: str) -> object:
    # S3ArtifactStore is loaded on first use: boto3 costs a quarter second of start-up.
    if name == "S3ArtifactStore":
        from video_pipelines.storage.s3 import S3ArtifactStore

        return S3ArtifactStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARTIFACTS_BASE_URL_ENV",
    "STORAGE_URL_ENV",
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "StoredArtifact",
    "file_sha256",
    "store_from_env",
    "store_from_url",
]
