"""`GET /artifacts/...`: the local store's videos and thumbnails over HTTP, in-process (FastAPI's TestClient).

Real MP4s made by FFmpeg, stored by the real LocalArtifactStore, served by the app with its
real lifespan; no API key anywhere, as a browser following a link from the Dagster UI has none.
Last, the preview a node's materialization shows, whose links are these URLs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from video_pipelines.api import ApiSettings, create_app
from video_pipelines.operations import generate_clip
from video_pipelines.orchestration.catalog.previews import links, node_preview
from video_pipelines.plan.results import Captions, VideoResult
from video_pipelines.storage import LocalArtifactStore, StoredArtifact, file_sha256

BASE_URL = "http://testserver/artifacts"


@dataclass(frozen=True)
class Served:
    client: TestClient
    root: Path
    video: StoredArtifact
    data: bytes


@pytest.fixture
def served(dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The app over a local store at tmp_path/artifacts (URLs under the TestClient's /artifacts), one video in it."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", root.as_uri())
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", BASE_URL)
    clip = tmp_path / "work" / "clip.mp4"
    clip.parent.mkdir()
    generate_clip(clip, prompt="served", width=320, height=180, duration=1, seed=3)
    video = LocalArtifactStore(root, base_url=BASE_URL).put_file(clip, sha256=file_sha256(clip))
    with TestClient(create_app(ApiSettings())) as client:
        yield Served(client, root, video, clip.read_bytes())


def test_a_stored_video_opens_at_its_url_without_a_key(served: Served) -> None:
    response = served.client.get(served.video.url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert "immutable" in response.headers["cache-control"]
    assert response.content == served.data


def test_a_range_request_gets_206_and_those_bytes(served: Served) -> None:
    response = served.client.get(served.video.url, headers={"Range": "bytes=100-1099"})

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-1099/{len(served.data)}"
    assert response.content == served.data[100:1100]
    # A player asks for the end first, to find the moov atom.
    tail = served.client.get(served.video.url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == served.data[-16:]


def test_head_answers_without_the_body(served: Served) -> None:
    response = served.client.head(served.video.url)

    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(served.data))
    assert response.content == b""


def test_the_thumbnail_is_a_jpeg(served: Served) -> None:
    assert served.video.thumbnail_url is not None
    response = served.client.get(served.video.thumbnail_url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    "path",
    [
        "/artifacts/%2e%2e/%2e%2e/etc/passwd",
        "/artifacts/videos/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/artifacts/..%2f..%2fetc%2fpasswd",
        "/artifacts//etc/passwd",
        "/artifacts/videos/",
        "/artifacts/videos",
        "/artifacts/",
    ],
)
def test_no_path_leads_out_of_the_store_or_lists_it(served: Served, path: str) -> None:
    (served.root.parent / "secret.mp4").write_bytes(b"secret")

    response = served.client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert b"secret" not in response.content


def test_only_content_keys_are_served(served: Served) -> None:
    sha = served.video.key.split("/")[2].removesuffix(".mp4")
    # Files a person or the health probe put in the folder are not content keys.
    other = served.root / "videos" / sha[:2] / "notes.txt"
    other.write_text("private")
    misplaced = served.root / "videos" / "00" / f"{sha}.mp4"
    misplaced.parent.mkdir()
    misplaced.write_bytes(served.data)

    for path in (
        f"videos/{sha[:2]}/notes.txt",
        f"videos/00/{sha}.mp4",  # the prefix must be the SHA-256's
        f"videos/{sha[:2]}/{sha}.jpg",  # thumbnails live under thumbnails/
        f"thumbnails/{sha[:2]}/{sha}.mp4",
        f"videos/{sha[:2]}/{sha.upper()}.mp4",
        f"videos/{'ab'}/{'ab' * 32}.mp4",  # a content key with nothing stored
    ):
        assert served.client.get(f"/artifacts/{path}").status_code == 404, path


def test_a_symlink_out_of_the_store_is_not_followed(served: Served, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"outside the store")
    sha = "cd" * 32
    link = served.root / "videos" / "cd" / f"{sha}.mp4"
    link.parent.mkdir()
    link.symlink_to(outside)

    response = served.client.get(f"/artifacts/videos/cd/{sha}.mp4")

    assert response.status_code == 404 and b"outside" not in response.content


def test_from_s3_the_route_sends_the_client_to_a_presigned_url(
    served: Served, dagster_home: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bytes through the API: a 307 to the object, signed for a short while (a thumbnail: no S3 call at all;
    a video's fetch, recorded after the object is found, is in test_fetches_http.py)."""
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", "s3://media-bucket/renders")
    assert served.video.thumbnail_url is not None
    with TestClient(create_app(ApiSettings())) as client:
        response = client.get(served.video.thumbnail_url, follow_redirects=False)
        refused = client.get("/artifacts/videos/00/notes.txt", follow_redirects=False)

    assert response.status_code == 307 and response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    key = served.video.thumbnail_url.removeprefix(f"{BASE_URL}/")
    assert location.startswith(f"https://media-bucket.s3.amazonaws.com/renders/{key}?")
    assert "X-Amz-Expires=3600" in location and "X-Amz-Signature=" in location
    assert refused.status_code == 404  # only content keys, from S3 too


def test_a_nodes_preview_shows_its_thumbnail_links_its_video_and_names_its_file(served: Served) -> None:
    sha = file_sha256(served.root / served.video.key)
    result = VideoResult(
        url=served.video.url,
        duration=1.0,
        width=320,
        height=180,
        aspect_ratio="16:9",
        size_bytes=len(served.data),
        sha256=sha,
    )

    metadata = node_preview(LocalArtifactStore(served.root, base_url=BASE_URL), result, node_id="intro")

    thumbnail_url = f"{BASE_URL}/thumbnails/{sha[:2]}/{sha}.jpg"
    assert metadata["preview"].value == f"![intro]({thumbnail_url})\n\n[{served.video.url}]({served.video.url})"
    assert metadata["path"].value == str(served.root / served.video.key)
    # Both links of the markdown open in a browser: the API serves them.
    assert served.client.get(thumbnail_url).headers["content-type"] == "image/jpeg"
    assert served.client.get(served.video.url).content == served.data


def test_a_preview_without_a_thumbnail_is_the_link_alone(served: Served, tmp_path: Path) -> None:
    sha = "ab" * 32
    result = VideoResult(
        url=f"{BASE_URL}/videos/ab/{sha}.mp4",
        duration=1.0,
        width=320,
        height=180,
        aspect_ratio="16:9",
        size_bytes=1,
        sha256=sha,
    )

    metadata = node_preview(LocalArtifactStore(tmp_path / "empty", base_url=BASE_URL), result, node_id="old")

    assert metadata["preview"].value == f"[{result.url}]({result.url})"


def test_a_subtitled_videos_caption_links_come_first_with_its_own() -> None:
    sha = "ab" * 32
    captions = Captions(srt=f"{BASE_URL}/captions/{sha}.srt", vtt=f"{BASE_URL}/captions/{sha}.vtt")
    result = VideoResult(f"{BASE_URL}/videos/ab/{sha}.mp4", 1.0, 320, 180, "16:9", 1, sha, captions=captions)

    # First in the materialization's metadata, which the run page's event log shows, as links.
    assert {name: value.value for name, value in links(result).items()} == {
        "url": result.url, "captions_srt": captions.srt, "captions_vtt": captions.vtt
    }  # fmt: skip


def test_a_nodes_materialization_shows_its_thumbnail_link_and_path(
    dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the asset catalog shows under `video-pipelines dev`: a picture, a link a browser opens, the file."""
    import dagster as dg

    from .harness import run_plan_in_process

    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", "http://127.0.0.1:8080/artifacts")
    plan = {
        "jobs": [
            {"id": "clip", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1, "resolution": 64}}
        ]
    }
    with dg.DagsterInstance.get() as instance:
        result = run_plan_in_process(plan, instance)
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    url = metadata["url"].value
    assert isinstance(url, str) and url.startswith("http://127.0.0.1:8080/artifacts/videos/")
    preview = metadata["preview"].value
    assert (
        isinstance(preview, str) and "![clip](http://127.0.0.1:8080/artifacts/thumbnails/" in preview and url in preview
    )
    path = metadata["path"].value
    assert isinstance(path, str) and Path(path).is_file() and path.endswith(".mp4")
