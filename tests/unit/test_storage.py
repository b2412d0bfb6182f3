"""Artifact storage: the local folder store, and the S3 store against moto's real HTTP server."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from video_pipelines.errors import StorageError, TransientStorageError
from video_pipelines.net import fetch_to_file, parse_allowed_hosts
from video_pipelines.storage import (
    LocalArtifactStore,
    S3ArtifactStore,
    file_sha256,
    store_from_url,
)
from video_pipelines.storage.s3 import translate_error

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64


def _write(folder: Path, name: str, data: bytes = VIDEO) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path, file_sha256(path)


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- LocalArtifactStore ---------------------------------------------------------------------------


def test_local_round_trip(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _write(tmp_path / "work", "clip.mp4")

    stored = store.put_file(source, sha256=sha)

    assert stored.key == f"videos/{sha[:2]}/{sha}.mp4" == store.key_for(sha)
    assert stored.size_bytes == len(VIDEO)
    assert store.exists(stored.key)
    assert stored.url == store.url_for(stored.key)
    assert stored.url.startswith("file:///")
    with urllib.request.urlopen(stored.url) as response:
        assert response.read() == VIDEO
    assert store.local_path(stored.key) == tmp_path / "artifacts" / stored.key
    assert store.describe() == (tmp_path / "artifacts").as_uri()


def test_local_put_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    first, sha = _write(tmp_path / "a", "clip.mp4")
    second, same_sha = _write(tmp_path / "b", "other-name.mp4")
    assert sha == same_sha

    keys = {store.put_file(first, sha256=sha).key, store.put_file(second, sha256=sha).key}

    assert keys == {store.key_for(sha)}
    assert _all_files(tmp_path / "artifacts") == [store.key_for(sha)]


def test_local_put_hard_links_on_the_same_filesystem(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _write(tmp_path / "work", "clip.mp4")
    stored = store.put_file(source, sha256=sha)
    path = store.local_path(stored.key)
    assert path is not None
    assert path.stat().st_ino == source.stat().st_ino


def test_local_put_replaces_a_torn_object(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _write(tmp_path / "work", "clip.mp4")
    torn = tmp_path / "artifacts" / store.key_for(sha)
    torn.parent.mkdir(parents=True)
    torn.write_bytes(VIDEO[:10])

    store.put_file(source, sha256=sha, content_type="video/mp4")

    assert torn.read_bytes() == VIDEO
    assert _all_files(tmp_path / "artifacts") == [store.key_for(sha)]


def test_local_fetch_to_copies(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _write(tmp_path / "work", "clip.mp4")
    key = store.put_file(source, sha256=sha).key

    dest = store.fetch_to(key, tmp_path / "out" / "input.mp4")

    assert dest.read_bytes() == VIDEO
    # A copy: editing the working file can never change the stored object.
    assert dest.stat().st_ino != source.stat().st_ino
    assert _all_files(tmp_path / "out") == ["input.mp4"]


def test_local_missing_and_invalid_keys(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    key = store.key_for("ab" * 32, ".wav")
    assert key == f"videos/ab/{'ab' * 32}.wav"
    assert not store.exists(key)
    assert store.local_path(key) is None
    with pytest.raises(StorageError, match="no object"):
        store.fetch_to(key, tmp_path / "x.mp4")
    for bad in ("../outside.mp4", "/etc/passwd", "videos//a.mp4", "videos/a b.mp4"):
        with pytest.raises(StorageError, match="invalid artifact key"):
            store.exists(bad)
    with pytest.raises(StorageError, match="sha256 must be 64 lowercase hex"):
        store.key_for("ABC")
    with pytest.raises(StorageError, match="suffix"):
        store.key_for("ab" * 32, "/../x")


def test_local_put_of_a_missing_file_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(StorageError, match="cannot store"):
        store.put_file(tmp_path / "nope.mp4", sha256="cd" * 32)


# --- S3ArtifactStore against moto's server ---------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_aws(aws_env: None) -> None:
    """Every test here runs with dummy credentials and no machine AWS configuration."""


def _admin(endpoint: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


@pytest.fixture
def bucket(s3_bucket: str) -> str:
    return s3_bucket


def _object_keys(endpoint: str, bucket: str) -> list[str]:
    listing = _admin(endpoint).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_s3_put_exists_fetch_and_idempotent_put(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(bucket, "/renders/", endpoint_url=s3_endpoint)
    source, sha = _write(tmp_path / "work", "clip.mp4")

    stored = store.put_file(source, sha256=sha)
    again = store.put_file(source, sha256=sha)

    assert stored.key == again.key == f"videos/{sha[:2]}/{sha}.mp4"
    assert stored.size_bytes == again.size_bytes == len(VIDEO)
    assert store.exists(stored.key)
    assert not store.exists(store.key_for("00" * 32))
    assert store.local_path(stored.key) is None
    assert _object_keys(s3_endpoint, bucket) == [f"renders/{stored.key}"]
    head = _admin(s3_endpoint).head_object(Bucket=bucket, Key=f"renders/{stored.key}")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"sha256": sha}

    dest = store.fetch_to(stored.key, tmp_path / "out" / "input.mp4")
    assert dest.read_bytes() == VIDEO
    assert _all_files(tmp_path / "out") == ["input.mp4"]
    assert store.describe() == f"s3://{bucket}/renders at {s3_endpoint}"


def test_s3_presigned_url_serves_the_exact_bytes(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(bucket, endpoint_url=s3_endpoint, presign_seconds=600)
    source, sha = _write(tmp_path / "work", "clip.mp4")
    url = store.put_file(source, sha256=sha).url

    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    assert httpx.get(url).content == VIDEO
    # The same URL through the SSRF-guarded downloader (connects to the IP, keeps the signed Host).
    dest = tmp_path / "downloaded.mp4"
    assert fetch_to_file(url, dest, allowed=parse_allowed_hosts("127.0.0.1")) == len(VIDEO)
    assert dest.read_bytes() == VIDEO


def test_s3_public_base_url(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(bucket, "media", endpoint_url=s3_endpoint, public_base_url="https://cdn.example.com/v/")
    source, sha = _write(tmp_path / "work", "clip.mp4")
    stored = store.put_file(source, sha256=sha)
    assert stored.url == f"https://cdn.example.com/v/media/videos/{sha[:2]}/{sha}.mp4"


def test_s3_missing_bucket_is_a_storage_error(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3ArtifactStore("no-such-bucket-here", endpoint_url=s3_endpoint)
    source, sha = _write(tmp_path / "work", "clip.mp4")
    with pytest.raises(StorageError, match="NoSuchBucket") as caught:
        store.put_file(source, sha256=sha)
    assert not isinstance(caught.value, TransientStorageError)
    assert f"s3://no-such-bucket-here/videos/{sha[:2]}/{sha}.mp4" in str(caught.value)
    assert "bucket does not exist" in str(caught.value)


def test_s3_fetch_of_a_missing_object_is_a_storage_error(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(bucket, endpoint_url=s3_endpoint)
    with pytest.raises(StorageError, match="no such object") as caught:
        store.fetch_to(store.key_for("ef" * 32), tmp_path / "out.mp4")
    assert not isinstance(caught.value, TransientStorageError)
    assert list(tmp_path.iterdir()) == []


def test_s3_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=closed, config=Config(retries={"max_attempts": 1}, connect_timeout=2)
    )
    store = S3ArtifactStore("bucket", client=client)
    with pytest.raises(TransientStorageError, match="worth a retry"):
        store.exists(store.key_for("ab" * 32))


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (503, "SlowDown", True),
        (500, "InternalError", True),
        (429, "TooManyRequests", True),
        (400, "RequestTimeout", True),
        (403, "AccessDenied", False),
        (404, "NoSuchBucket", False),
        (400, "InvalidArgument", False),
    ],
)
def test_client_errors_map_to_storage_errors(status: int, code: str, transient: bool) -> None:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error = ClientError(response, "PutObject")
    mapped = translate_error(error, action="upload", location="s3://b/k")
    assert isinstance(mapped, TransientStorageError) is transient
    assert "s3://b/k" in str(mapped) and code in str(mapped)


def test_s3_presign_seconds_is_bounded() -> None:
    with pytest.raises(StorageError, match="presign_seconds"):
        S3ArtifactStore("bucket", presign_seconds=8 * 24 * 3600)


# --- store_from_url --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "  "])
def test_store_from_url_defaults_to_the_local_root(url: str | None, tmp_path: Path) -> None:
    store = store_from_url(url, default_root=tmp_path / "default")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "default"


def test_store_from_url_file(tmp_path: Path) -> None:
    store = store_from_url((tmp_path / "my artifacts").as_uri(), default_root=tmp_path)
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "my artifacts"


@pytest.mark.parametrize(
    ("url", "prefix"),
    [("s3://media-bucket", ""), ("s3://media-bucket/", ""), ("s3://media-bucket/a/b/", "a/b")],
)
def test_store_from_url_s3(url: str, prefix: str, tmp_path: Path) -> None:
    store = store_from_url(url, default_root=tmp_path)
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix, store.endpoint_url, store.public_base_url) == (
        "media-bucket",
        prefix,
        None,
        None,
    )


def test_store_from_url_reads_the_public_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_PUBLIC_BASE_URL", "https://cdn.example.com")
    store = store_from_url("s3://media-bucket/p", default_root=tmp_path)
    assert isinstance(store, S3ArtifactStore)
    assert store.url_for("videos/ab/x.mp4") == "https://cdn.example.com/p/videos/ab/x.mp4"


@pytest.mark.parametrize(
    "url",
    [
        "file://relative/dir",
        "file:relative/dir",
        "file:///abs?x=1",
        "s3://",
        "s3://bucket/prefix?endpoint=http://x",
        "http://example.com/artifacts",
        "/abs/dir",
        "gs://bucket",
    ],
)
def test_store_from_url_refuses_other_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="VIDEO_PIPELINES_STORAGE_URL must be file:///abs/dir or s3://bucket/prefix"):
        store_from_url(url, default_root=tmp_path)


def test_store_from_url_never_echoes_credentials(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="credentials do not belong in the URL") as caught:
        store_from_url("s3://AKIAEXAMPLE:topsecret@bucket/prefix", default_root=tmp_path)
    assert "topsecret" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_boto3_honours_aws_endpoint_url(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    store = store_from_url(f"s3://{bucket}/from-env", default_root=tmp_path)
    assert isinstance(store, S3ArtifactStore) and store.endpoint_url is None
    source, sha = _write(tmp_path / "work", "clip.mp4")

    stored = store.put_file(source, sha256=sha)

    assert _object_keys(s3_endpoint, bucket) == [f"from-env/{stored.key}"]
    assert stored.url.startswith(f"{s3_endpoint}/{bucket}/from-env/videos/")
    assert store.describe() == f"s3://{bucket}/from-env"


# --- Local artifacts served over HTTP, and thumbnails ---------------------------------------------

# Nothing listens on the discard port: a test passes only if nothing is fetched from these URLs.
UNSERVED_BASE_URL = "http://127.0.0.1:9/artifacts"


def _real_video(folder: Path, name: str, *, width: int = 640, height: int = 360, seed: int = 1) -> tuple[Path, str]:
    from video_pipelines.operations import generate_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    generate_clip(path, prompt=name, width=width, height=height, duration=1, seed=seed)
    return path, file_sha256(path)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment."""
    assert data[:3] == b"\xff\xd8\xff", "not a JPEG"
    at = 2
    while at < len(data):
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in {0xC0, 0xC1, 0xC2}:
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
        at += 2 + length
    raise AssertionError("no start-of-frame segment")


def test_local_store_with_a_base_url_gives_http_urls(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts", base_url=UNSERVED_BASE_URL + "/")
    source, sha = _real_video(tmp_path / "work", "clip.mp4")

    stored = store.put_file(source, sha256=sha)

    assert stored.url == f"{UNSERVED_BASE_URL}/videos/{sha[:2]}/{sha}.mp4" == store.url_for(stored.key)
    assert stored.thumbnail_url == f"{UNSERVED_BASE_URL}/thumbnails/{sha[:2]}/{sha}.jpg" == store.thumbnail_url(sha)
    assert store.local_path(stored.key) == tmp_path / "artifacts" / stored.key
    assert store.location(stored.key) == str(tmp_path / "artifacts" / stored.key)


def test_store_from_url_reads_the_artifacts_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", UNSERVED_BASE_URL)
    for url in (None, (tmp_path / "elsewhere").as_uri()):
        store = store_from_url(url, default_root=tmp_path)
        assert isinstance(store, LocalArtifactStore) and store.base_url == UNSERVED_BASE_URL
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", "ftp://127.0.0.1/artifacts")
    with pytest.raises(StorageError, match="artifacts base URL must be an http"):
        store_from_url(None, default_root=tmp_path)


def test_a_stored_video_gets_a_jpeg_thumbnail_320_pixels_wide(tmp_path: Path) -> None:
    from tests.media import ffmpeg_stdout

    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _real_video(tmp_path / "work", "clip.mp4", width=640, height=360)

    stored = store.put_file(source, sha256=sha)

    thumbnail = tmp_path / "artifacts" / f"thumbnails/{sha[:2]}/{sha}.jpg"
    assert stored.thumbnail_url == thumbnail.as_uri()
    data = thumbnail.read_bytes()
    assert _jpeg_size(data) == (320, 180)
    # FFmpeg decodes it too: one 320x180 frame of 8-bit grey is 57600 bytes.
    assert len(ffmpeg_stdout("-i", str(thumbnail), "-f", "rawvideo", "-pix_fmt", "gray", "-")) == 320 * 180
    assert _all_files(tmp_path / "artifacts") == [f"thumbnails/{sha[:2]}/{sha}.jpg", stored.key]
    assert store.put_file(source, sha256=sha).thumbnail_url == stored.thumbnail_url


def test_only_playable_videos_get_thumbnails(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source, sha = _write(tmp_path / "work", "not-a-video.mp4")
    text, text_sha = _write(tmp_path / "work", "probe.txt", b"probe")

    unreadable = store.put_file(source, sha256=sha)
    plain = store.put_file(text, sha256=text_sha, suffix=".txt", content_type="text/plain")

    assert unreadable.thumbnail_url is None and store.exists(unreadable.key)
    assert plain.thumbnail_url is None
    assert store.thumbnail_url(sha) is None
    assert _all_files(tmp_path / "artifacts") == sorted([unreadable.key, plain.key])


def test_s3_put_of_a_video_stores_its_thumbnail(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(bucket, "renders", endpoint_url=s3_endpoint, public_base_url="https://cdn.example.com")
    source, sha = _real_video(tmp_path / "work", "clip.mp4")

    stored = store.put_file(source, sha256=sha)

    thumbnail = f"renders/thumbnails/{sha[:2]}/{sha}.jpg"
    assert stored.thumbnail_url == f"https://cdn.example.com/{thumbnail}"
    assert _object_keys(s3_endpoint, bucket) == [thumbnail, f"renders/{stored.key}"]
    head = _admin(s3_endpoint).head_object(Bucket=bucket, Key=thumbnail)
    assert head["ContentType"] == "image/jpeg"
    assert store.location(stored.key) == f"s3://{bucket}/renders/{stored.key}"


def test_a_merge_reads_http_url_inputs_from_the_local_files(tmp_path: Path) -> None:
    from video_pipelines.nodes.runner import NodeEnvironment, run_node
    from video_pipelines.operations import probe
    from video_pipelines.plan.model import PlanNode
    from video_pipelines.plan.params import Operation

    env = NodeEnvironment(store=LocalArtifactStore(tmp_path / "artifacts", base_url=UNSERVED_BASE_URL))
    clips = [
        run_node(
            PlanNode(name, Operation.GENERATE_VIDEO, {"prompt": name, "duration": 1, "resolution": 90}),
            inputs=[],
            upstream={},
            lineage=f"{seed:064x}",
            env=env,
        ).result
        for seed, name in enumerate(("first", "second"), start=1)
    ]
    assert all(clip.url.startswith(UNSERVED_BASE_URL + "/videos/") for clip in clips)

    # A fresh store on the same folder, as a later run opens it: the inputs are its files, not downloads.
    env = NodeEnvironment(store=LocalArtifactStore(tmp_path / "artifacts", base_url=UNSERVED_BASE_URL))
    merged = run_node(
        PlanNode("both", Operation.MERGE, {}, depends_on=("first", "second")),
        inputs=clips,
        upstream={},
        lineage="f" * 64,
        env=env,
    ).result

    assert merged.url == f"{UNSERVED_BASE_URL}/videos/{merged.sha256[:2]}/{merged.sha256}.mp4"
    assert merged.duration == pytest.approx(2.0, abs=0.1)
    stored = env.store.local_path(env.store.key_for(merged.sha256))
    assert stored is not None and probe(stored).duration == pytest.approx(2.0, abs=0.1)
