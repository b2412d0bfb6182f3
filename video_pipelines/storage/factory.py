"""Build the artifact store named by `VIDEO_PIPELINES_STORAGE_URL`."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from video_pipelines.errors import StorageError
from video_pipelines.storage.base import ArtifactStore
from video_pipelines.storage.local import LocalArtifactStore

STORAGE_URL_ENV = "VIDEO_PIPELINES_STORAGE_URL"
PUBLIC_BASE_URL_ENV = "VIDEO_PIPELINES_PUBLIC_BASE_URL"
ARTIFACTS_BASE_URL_ENV = "VIDEO_PIPELINES_ARTIFACTS_BASE_URL"
_USAGE = "VIDEO_PIPELINES_STORAGE_URL must be file:///abs/dir or s3://bucket/prefix"


def _for_message(url: str) -> str:
    """The URL as it may appear in an error: without any user:password@ part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return repr(url)
    return repr(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl())


def store_from_env(dagster_home: Path) -> ArtifactStore:
    """The store `$VIDEO_PIPELINES_STORAGE_URL` names, else the folder `artifacts` of `dagster_home`."""
    return store_from_url(os.environ.get(STORAGE_URL_ENV), default_root=dagster_home / "artifacts")


def store_from_url(url: str | None, *, default_root: Path) -> ArtifactStore:
    """The store a storage URL names: empty -> `default_root`, `file:///dir` -> local, `s3://bucket/prefix` -> S3."""
    artifacts_base_url = os.environ.get(ARTIFACTS_BASE_URL_ENV, "").strip() or None
    if url is None or not url.strip():
        return LocalArtifactStore(default_root, base_url=artifacts_base_url)
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in {"", "localhost"} or not path.startswith("/") or parts.query or parts.fragment:
            raise StorageError(f"{_USAGE} (a file URL needs an absolute local path), got {_for_message(url)}")
        return LocalArtifactStore(Path(path), base_url=artifacts_base_url)
    if scheme == "s3":
        # Imported here: boto3 costs a quarter second of start-up to every run worker that stores locally.
        from video_pipelines.storage.s3 import S3ArtifactStore

        if "@" in parts.netloc:
            raise StorageError(
                f"{_USAGE}, got {_for_message(url)}: credentials do not belong in the URL "
                "(use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)"
            )
        if not parts.netloc or parts.query or parts.fragment:
            raise StorageError(f"{_USAGE} (a bucket name, an optional prefix, nothing else), got {_for_message(url)}")
        return S3ArtifactStore(
            parts.netloc, unquote(parts.path), public_base_url=os.environ.get(PUBLIC_BASE_URL_ENV) or None
        )
    raise StorageError(f"{_USAGE}, got {_for_message(url)}")
