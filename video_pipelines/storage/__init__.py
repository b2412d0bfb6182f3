"""Artifact storage: produced videos, content-addressed by SHA-256, in a folder or an S3 bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.lazy import lazy_exports
from video_pipelines.storage.base import ArtifactStore as ArtifactStore
from video_pipelines.storage.base import StoredArtifact as StoredArtifact
from video_pipelines.storage.digest import file_sha256 as file_sha256
from video_pipelines.storage.factory import ARTIFACTS_BASE_URL_ENV as ARTIFACTS_BASE_URL_ENV
from video_pipelines.storage.factory import STORAGE_URL_ENV as STORAGE_URL_ENV
from video_pipelines.storage.factory import LocalArtifactStore as LocalArtifactStore
from video_pipelines.storage.factory import store_from_env as store_from_env
from video_pipelines.storage.factory import store_from_url as store_from_url

if TYPE_CHECKING:
    from video_pipelines.storage.s3 import S3ArtifactStore as S3ArtifactStore


if not TYPE_CHECKING:  # S3ArtifactStore is loaded on first use: boto3 costs a quarter second of start-up.
    __getattr__ = lazy_exports(__name__, {"s3": ("S3ArtifactStore",)})
