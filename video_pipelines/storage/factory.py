"""The artifact store named by `VIDEO_PIPELINES_STORAGE_URL`, and the local-folder one (the embedded default)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from video_pipelines.errors import StorageError
from video_pipelines.storage.base import ArtifactStore, StoredArtifact, check_key

STORAGE_URL_ENV = "VIDEO_PIPELINES_STORAGE_URL"
PUBLIC_BASE_URL_ENV = "VIDEO_PIPELINES_PUBLIC_BASE_URL"
ARTIFACTS_BASE_URL_ENV = "VIDEO_PIPELINES_ARTIFACTS_BASE_URL"
# Where clients and providers reach the API (the providers' webhooks read it too): with S3 storage and no
# public base URL, result URLs are its `/artifacts/<key>`, which redirects to a fresh presigned URL.
PUBLIC_URL_ENV = "VIDEO_PIPELINES_PUBLIC_URL"
_USAGE = "VIDEO_PIPELINES_STORAGE_URL must be file:///abs/dir or s3://bucket/prefix"


class LocalArtifactStore(ArtifactStore):
    """Files under `root`, written atomically; a put hard-links when it can (never edit stored files in place).
    URLs are `file://`, or `<base_url>/<key>` where an HTTP server serves `root` (browsers refuse file://)."""

    def __init__(self, root: Path, *, base_url: str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.base_url = base_url.rstrip("/") if base_url else None
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
                raise StorageError(
                    f"the artifacts base URL must be an http(s) URL such as http://127.0.0.1:8080/artifacts, "
                    f"got {base_url!r}"
                )

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _put(self, path: Path, *, key: str, sha256: str | None, content_type: str) -> StoredArtifact:
        dest = self._path(key)
        try:
            size = path.stat().st_size
            # A file of another size under a content key is a torn write from elsewhere: replace it.
            if not (dest.is_file() and dest.stat().st_size == size):
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._install(path, dest, link=True)
        except OSError as exc:
            raise StorageError(f"cannot store {path} as {key} in {self.describe()}: {exc}") from exc
        return StoredArtifact(key=key, url=self.url_for(key), size_bytes=size)

    @staticmethod
    def _install(source: Path, dest: Path, *, link: bool) -> None:
        # Same folder as the destination, so the rename is an atomic rename on one filesystem.
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            if link:
                try:
                    os.link(source, tmp)
                except OSError:
                    # Other filesystem (EXDEV), or links not permitted: fall back to a copy.
                    shutil.copyfile(source, tmp)
            else:
                shutil.copyfile(source, tmp)
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def url_for(self, key: str) -> str:
        path = self._path(key)
        if self.base_url is None:
            return path.as_uri()
        return f"{self.base_url}/{quote(key, safe='/')}"

    def fetch_to(self, key: str, dest: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"no object {key} in {self.describe()}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            # A copy, not a link: the caller may change its working file, the stored one must not change.
            self._install(source, dest, link=False)
        except OSError as exc:
            raise StorageError(f"cannot copy {key} from {self.describe()} to {dest}: {exc}") from exc
        return dest

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def location(self, key: str) -> str:
        return str(self._path(key))

    def describe(self) -> str:
        return self.root.as_uri()


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
        public_url = os.environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/")
        return S3ArtifactStore(
            parts.netloc,
            unquote(parts.path),
            public_base_url=os.environ.get(PUBLIC_BASE_URL_ENV) or None,
            served_base_url=f"{public_url}/artifacts" if public_url else None,
        )
    raise StorageError(f"{_USAGE}, got {_for_message(url)}")
