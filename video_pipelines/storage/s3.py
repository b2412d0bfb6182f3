"""Artifact storage in an S3 bucket (AWS or any S3-compatible endpoint), through boto3."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit

import boto3
import botocore.exceptions
from boto3.exceptions import Boto3Error
from boto3.exceptions import RetriesExceededError as Boto3RetriesExceededError
from botocore.config import Config

from video_pipelines.errors import StorageError, TransientStorageError
from video_pipelines.net.fetch import atomic_file
from video_pipelines.storage.base import ArtifactStore, StoredArtifact, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 limit

# Error codes S3 and S3-compatible servers use for "slow down"; botocore already retried them.
_THROTTLING_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "RequestTimeout", "InternalError", "ServiceUnavailable",
})  # fmt: skip
_BOTO_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, Boto3Error)


def _underlying(exc: BaseException) -> BaseException:
    """The error boto3 wrapped (S3UploadFailedError hides the ClientError in its context)."""
    last = getattr(exc, "last_exception", None)
    if isinstance(exc, Boto3RetriesExceededError) and isinstance(last, BaseException):
        return last
    if isinstance(exc, Boto3Error):
        inner = exc.__cause__ or exc.__context__
        if inner is not None:
            return inner
    return exc


def translate_error(exc: BaseException, *, action: str, location: str) -> StorageError:
    """Map a boto3/botocore error to StorageError, or TransientStorageError when a retry may pass."""
    cause = _underlying(exc)
    prefix = f"S3 {action} {location} failed"
    if isinstance(cause, botocore.exceptions.ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")).strip()
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = " ".join(part for part in (str(status or ""), code, message and f"- {message}") if part)
        if status >= 500 or status == 429 or code in _THROTTLING_CODES:
            return TransientStorageError(f"{prefix} ({detail}); worth a retry")
        hint = ""
        if code == "NoSuchBucket":
            hint = ": the bucket does not exist (create it, or fix VIDEO_PIPELINES_STORAGE_URL)"
        elif code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            hint = ": access denied (check the AWS credentials and the bucket policy)"
        elif code in {"NoSuchKey", "404", "NotFound"}:
            hint = ": no such object"
        return StorageError(f"{prefix} ({detail}){hint}")
    no_credentials = botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    if isinstance(cause, no_credentials):
        return StorageError(
            f"{prefix}: no usable AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE or an instance role)"
        )
    if isinstance(cause, botocore.exceptions.SSLError):
        return StorageError(f"{prefix}: TLS error talking to the endpoint: {cause}")
    if isinstance(
        cause,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.IncompleteReadError
        | Boto3RetriesExceededError
        | TimeoutError
        | ConnectionError,
    ):
        return TransientStorageError(f"{prefix}: {cause}; worth a retry")
    return StorageError(f"{prefix}: {cause}")


def _endpoint_for_logs(endpoint_url: str) -> str:
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


class S3ArtifactStore(ArtifactStore):
    """Objects under `s3://<bucket>/<prefix>/` (boto3 from the standard AWS settings). URLs are
    `public_base_url/<prefix>/<key>` when set (a CDN); else `served_base_url/<key>` when set (the API's
    `/artifacts`, which answers with a fresh presigned URL and records the fetch); else presigned GETs."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_base_url: str | None = None,
        served_base_url: str | None = None,
        presign_seconds: int = MAX_PRESIGN_SECONDS,
        addressing_style: Literal["auto", "virtual", "path"] | None = None,
        client: S3Client | None = None,
    ) -> None:
        if not bucket or "/" in bucket or bucket.strip() != bucket:
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
            raise StorageError(
                f"presign_seconds must be between 1 and {MAX_PRESIGN_SECONDS} (7 days), got {presign_seconds}"
            )
        self.bucket = bucket
        self.prefix = "/".join(part for part in prefix.split("/") if part)
        self.endpoint_url = endpoint_url or None
        self.public_base_url = public_base_url or None
        if served_base_url and urlsplit(served_base_url).scheme not in {"http", "https"}:
            raise StorageError(
                "VIDEO_PIPELINES_PUBLIC_URL (where result URLs on S3 point, under /artifacts) must be an http(s) URL "
                f"such as https://api.example.com, got {served_base_url.removesuffix('/artifacts')!r}"
            )
        self.served_base_url = served_base_url.rstrip("/") if served_base_url else None
        self.presign_seconds = presign_seconds
        self.addressing_style = addressing_style
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        """The boto3 client, made on first use in its own session (boto3's default one is not thread-safe)."""
        with self._client_lock:
            if self._client is None:
                # SigV4 explicitly: without it botocore presigns with legacy SigV2 for us-east-1,
                # which AWS no longer accepts on newer buckets and which ignores the 7-day limit.
                config = Config(signature_version="s3v4", retries={"mode": "standard"})
                if self.addressing_style:
                    config = config.merge(Config(s3={"addressing_style": self.addressing_style}))
                try:
                    self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
                except _BOTO_ERRORS as exc:
                    raise translate_error(exc, action="client setup", location=self.describe()) from exc
            return self._client

    def full_key(self, key: str) -> str:
        """The object's key in the bucket (the store prefix plus the relative key)."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head_size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except _BOTO_ERRORS as exc:
            response = exc.response if isinstance(exc, botocore.exceptions.ClientError) else {}
            # HEAD has no body, so a missing bucket is also a bare 404; the put that follows names it.
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise translate_error(exc, action="HeadObject", location=self.location(key)) from exc
        return int(head.get("ContentLength", 0))

    def _put(self, path: Path, *, key: str, sha256: str | None, content_type: str) -> StoredArtifact:
        existing = self._head_size(key)
        if existing is not None:
            return StoredArtifact(key=key, url=self.url_for(key), size_bytes=existing)
        try:
            size = path.stat().st_size
            self.client.upload_file(
                str(path),
                self.bucket,
                self.full_key(key),
                ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha256} if sha256 else {}},
            )
        # Boto errors first: some of botocore's connection errors are also OSErrors.
        except _BOTO_ERRORS as exc:
            raise translate_error(exc, action="upload", location=self.location(key)) from exc
        except OSError as exc:
            raise StorageError(f"cannot upload {path} to {self.location(key)}: {exc}") from exc
        return StoredArtifact(key=key, url=self.url_for(key), size_bytes=size)

    def url_for(self, key: str) -> str:
        full_key = self.full_key(key)
        if self.public_base_url:
            return f"{self.public_base_url.rstrip('/')}/{quote(full_key, safe='/')}"
        if self.served_base_url:
            return f"{self.served_base_url}/{quote(key, safe='/')}"
        return self.presigned_url(key)

    def direct_url(self, key: str, *, seconds: int, method: Literal["GET", "HEAD"] = "GET") -> str:
        return self.presigned_url(key, seconds=seconds, method=method)

    def presigned_url(self, key: str, *, seconds: int | None = None, method: Literal["GET", "HEAD"] = "GET") -> str:
        """A URL that reads the object straight from S3 for `seconds` (default `presign_seconds`): a GET's, or a
        HEAD's (the method is signed too)."""
        operation = "head_object" if method == "HEAD" else "get_object"
        try:
            return self.client.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": self.full_key(key)},
                ExpiresIn=seconds or self.presign_seconds,
            )
        except _BOTO_ERRORS as exc:
            raise translate_error(exc, action="presign", location=self.location(key)) from exc

    def fetch_to(self, key: str, dest: Path) -> Path:
        try:
            with atomic_file(dest) as out:
                self.client.download_fileobj(self.bucket, self.full_key(key), out)
        except _BOTO_ERRORS as exc:
            raise translate_error(exc, action="download", location=self.location(key)) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {self.location(key)} to {dest}: {exc}") from exc
        return dest

    def local_path(self, key: str) -> Path | None:
        return None

    def exists(self, key: str) -> bool:
        return self._head_size(key) is not None

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {_endpoint_for_logs(self.endpoint_url)}" if self.endpoint_url else where
