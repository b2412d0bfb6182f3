"""The artifact-store contract: content-addressed video files behind one interface."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from video_pipelines.errors import StorageError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,16}){1,3}")
# Keys are made by `key_for`, but `url_for`/`fetch_to`/`exists` also take keys read back from
# run metadata: only plain relative segments may reach a filesystem path or an S3 key.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredArtifact:
    """Where a stored file lives: its key in the store, a URL a client can open, and its size."""

    key: str
    url: str
    size_bytes: int


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key (no absolute path, no `..`), else raise StorageError."""
    segments = key.split("/")
    if not key or any(s in {"", ".", ".."} or not _KEY_SEGMENT.fullmatch(s) for s in segments):
        raise StorageError(f"invalid artifact key {key!r}: expected a relative key such as videos/ab/<sha256>.mp4")
    return key


class ArtifactStore(ABC):
    """Content-addressed storage for produced videos.

    Keys are relative to the store's root or prefix and derive from the content's SHA-256, so
    putting the same bytes twice keeps one object. Callers pass the SHA-256 they computed
    (see `video_pipelines.digest.file_sha256`); the store trusts it.
    """

    def key_for(self, sha256: str, suffix: str = ".mp4") -> str:
        """The key of content with this SHA-256: `videos/<sha256[:2]>/<sha256><suffix>`."""
        if not _SHA256.fullmatch(sha256):
            raise StorageError(f"sha256 must be 64 lowercase hex characters, got {sha256!r}")
        if not _SUFFIX.fullmatch(suffix):
            raise StorageError(f"suffix must look like '.mp4', got {suffix!r}")
        return f"videos/{sha256[:2]}/{sha256}{suffix}"

    @abstractmethod
    def put_file(
        self, path: Path, *, sha256: str, suffix: str = ".mp4", content_type: str = "video/mp4"
    ) -> StoredArtifact:
        """Store the file at `path` under its content key; a second put of the same content is a no-op."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """A URL a client can open to read the object."""

    @abstractmethod
    def fetch_to(self, key: str, dest: Path) -> Path:
        """Write the object to `dest` (atomically) and return `dest`."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The object's file on local disk, to read without a copy; None for S3 or a missing object."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object is stored."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store points, for logs (never credentials)."""
