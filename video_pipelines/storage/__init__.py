"""Artifact storage: where produced videos are kept, content-addressed by SHA-256.

One abstract `ArtifactStore` with two real implementations:

- `LocalArtifactStore` — a folder (the embedded default, `DAGSTER_HOME/artifacts`);
  URLs are `file://` URLs, or http(s) URLs under a base URL where the folder is served
  (the API serves it at `/artifacts`, see `video_pipelines.api.artifacts`).
- `S3ArtifactStore` — a bucket on AWS or any S3-compatible server; URLs are presigned
  GET URLs, or public URLs when a public base URL is configured.

`store_from_url` builds the store from configuration (`store_from_env`: read from the environment):

- `VIDEO_PIPELINES_STORAGE_URL`: `file:///abs/dir` or `s3://bucket/optional/prefix`;
  unset or empty = the local default folder.
- `AWS_ENDPOINT_URL`: the S3-compatible endpoint, read by boto3 itself (as are the
  credentials and the region).
- `VIDEO_PIPELINES_PUBLIC_BASE_URL` (S3 only, optional): the objects are served publicly at
  `<this>/<prefix>/<key>` (a CDN or a public bucket). Result URLs are then stable, instead
  of presigned GET URLs that expire after 7 days.
- `VIDEO_PIPELINES_ARTIFACTS_BASE_URL` (local only, optional): the folder is served over HTTP
  at this URL (`video-pipelines dev` sets `http://127.0.0.1:8080/artifacts`, its API's), so
  result URLs and the UI's links open in a browser; unset = `file://` URLs.

A stored video gets a JPEG thumbnail (`thumbnails/<sha256[:2]>/<sha256>.jpg`), its URL in
`StoredArtifact.thumbnail_url`: the asset catalog shows it.

Every failure is a `StorageError`; the ones worth a retry (throttling, 5xx, connection
errors, timeouts) are `TransientStorageError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from video_pipelines.storage.base import ArtifactStore, StoredArtifact
from video_pipelines.storage.digest import file_sha256
from video_pipelines.storage.factory import (
    ARTIFACTS_BASE_URL_ENV,
    PUBLIC_BASE_URL_ENV,
    STORAGE_URL_ENV,
    store_from_env,
    store_from_url,
)
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
    "PUBLIC_BASE_URL_ENV",
    "STORAGE_URL_ENV",
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "StoredArtifact",
    "file_sha256",
    "store_from_env",
    "store_from_url",
]
