"""The artifact-store contract: content-addressed video files behind one interface."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from video_pipelines.errors import MediaError, StorageError
from video_pipelines.operations.ffmpeg import make_thumbnail

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,16}){1,3}")
# Keys are made by `key_for`, but `url_for`/`fetch_to`/`exists` also take keys read back from
# run metadata: only plain relative segments may reach a filesystem path or an S3 key.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredArtifact:
    """Where a stored file lives: key, a URL a client can open, size, and a JPEG thumbnail's URL for a video."""

    key: str
    url: str
    size_bytes: int
    thumbnail_url: str | None = None


def _check_sha256(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise StorageError(f"sha256 must be 64 lowercase hex characters, got {sha256!r}")
    return sha256


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key (no absolute path, no `..`), else raise StorageError."""
    segments = key.split("/")
    if not key or any(s in {"", ".", ".."} or not _KEY_SEGMENT.fullmatch(s) for s in segments):
        raise StorageError(f"invalid artifact key {key!r}: expected a relative key such as videos/ab/<sha256>.mp4")
    return key


class ArtifactStore(ABC):
    """Content-addressed storage: keys derive from the SHA-256 the caller computed (trusted). Thumbnails
    live under `thumbnails/`, not `videos/` (counted by tests and operators), and may expire on their own."""

    thumbnail_width = 320

    def key_for(self, sha256: str, suffix: str = ".mp4") -> str:
        """The key of content with this SHA-256: `videos/<sha256[:2]>/<sha256><suffix>`."""
        if not _SUFFIX.fullmatch(suffix):
            raise StorageError(f"suffix must look like '.mp4', got {suffix!r}")
        return f"videos/{_check_sha256(sha256)[:2]}/{sha256}{suffix}"

    def thumbnail_key(self, sha256: str) -> str:
        """The key of the thumbnail of the video with this SHA-256: `thumbnails/<sha256[:2]>/<sha256>.jpg`."""
        return f"thumbnails/{_check_sha256(sha256)[:2]}/{sha256}.jpg"

    def put_file(
        self, path: Path, *, sha256: str, suffix: str = ".mp4", content_type: str = "video/mp4"
    ) -> StoredArtifact:
        """Store `path` under its content key (a second put is a no-op); a video also gets its thumbnail."""
        stored = self._put(path, key=self.key_for(sha256, suffix), sha256=sha256, content_type=content_type)
        if not content_type.startswith("video/"):
            return stored
        return dataclasses.replace(stored, thumbnail_url=self._put_thumbnail(path, sha256))

    def put_sidecar(self, path: Path, *, video_sha256: str, suffix: str, content_type: str) -> StoredArtifact:
        """Store a file (`.srt`, `.vtt`) under the video's key with `suffix`: its cues are as fixed as its bytes."""
        if suffix == ".mp4":
            raise StorageError("a sidecar needs a suffix of its own, not the video's .mp4")
        return self._put(path, key=self.key_for(video_sha256, suffix), sha256=None, content_type=content_type)

    def _put_thumbnail(self, video: Path, sha256: str) -> str | None:
        if (stored := self.thumbnail_url(sha256)) is not None:
            return stored
        with tempfile.TemporaryDirectory(prefix="vp-thumbnail-") as tmp:
            thumbnail = Path(tmp) / "thumbnail.jpg"
            try:
                make_thumbnail(video, thumbnail, width=self.thumbnail_width)
            except MediaError:
                # A preview is a convenience: the video is stored, so the node must not fail for it.
                return None
            return self._put(thumbnail, key=self.thumbnail_key(sha256), sha256=None, content_type="image/jpeg").url

    def thumbnail_url(self, sha256: str) -> str | None:
        """The URL of the thumbnail of the video with this SHA-256, or None when none is stored."""
        key = self.thumbnail_key(sha256)
        return self.url_for(key) if self.exists(key) else None

    @abstractmethod
    def _put(self, path: Path, *, key: str, sha256: str | None, content_type: str) -> StoredArtifact:
        """Store the file at `path` under `key` unless it is there already; `sha256` is the file's, if known."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """A URL a client can open to read the object."""

    @abstractmethod
    def fetch_to(self, key: str, dest: Path) -> Path:
        """Write the object to `dest` (atomically) and return `dest`."""

    def direct_url(self, key: str, *, seconds: int, method: Literal["GET", "HEAD"] = "GET") -> str | None:
        """A short-lived URL that reads the object where it is stored, for a client sent there instead of being
        served the bytes; None where the store has none (a local folder: the API serves `local_path`)."""
        return None

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The object's file on local disk, to read without a copy; None for S3 or a missing object."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object is stored."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where the object is, for a person: its file path, or its `s3://` URI."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store points, for logs (never credentials)."""
