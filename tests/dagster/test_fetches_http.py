"""Fetches of result videos through the API's `/artifacts`, and the "never fetched" suggestion they back, over
HTTP on the real app (FastAPI's TestClient) with executions run on a real Dagster instance and real videos.

Local storage: the API serves the files and records each fetch. S3 storage (moto's server): result URLs are the
API's, which answers 307 with a fresh presigned URL that downloads the object from the S3 endpoint.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from video_pipelines.api.settings import ApiSettings
from video_pipelines.errors import UsageError
from video_pipelines.nodes.work import PARKING_ENV
from video_pipelines.submissions.fetches import VideoFetches

from ..unit.test_providers_replicate_fal import FakeReplicate
from .test_api import Api, ApiFactory, make_api, submit
from .test_operator_views import LOOPBACK, run_submitted
from .test_spend_cap import generate, long_clip, replicate

__all__ = ["long_clip", "make_api", "replicate"]  # fixtures used here

API = "http://testserver"  # where the TestClient reaches the app


def subtitled(prompt: str) -> dict[str, Any]:
    """A paid 1 s generation ($3: the provider serves 3 s at $1/s) and a free subtitle step: the final video."""
    return {
        "jobs": [
            generate("gen", 1, prompt=prompt),
            {"id": "final", "type": "addSubtitles", "params": {"text": prompt}, "dependsOn": ["gen"]},
        ]
    }


def result_of(api: Api, headers: dict[str, str], execution_id: str) -> dict[str, Any]:
    status = api.client.get(f"/api/execute/{execution_id}/status", headers=headers).json()
    assert status["status"] == "completed", status
    result: dict[str, Any] = status["result"]
    return result


def never_fetched(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = api.client.get("/api/costs/suggestions", headers=headers)
    assert answer.status_code == 200, answer.text
    return [found for found in answer.json() if found["kind"] == "neverFetched"]


def test_only_the_execution_whose_video_nobody_fetched_is_suggested_with_its_cost(
    make_api: ApiFactory, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PARKING_ENV, "off")  # each run waits for its prediction: one run per execution
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", f"{API}/artifacts")  # the API serves the results
    api = make_api(allowed_hosts=LOOPBACK, public_url=API, unfetched_grace_seconds=0)
    acme = api.key("acme")
    watched, ignored = submit(api, acme, subtitled("watched")), submit(api, acme, subtitled("ignored"))
    run_submitted(api)
    video, other = result_of(api, acme, watched), result_of(api, acme, ignored)
    assert video["url"] == f"{API}/artifacts/videos/{video['sha256'][:2]}/{video['sha256']}.mp4"
    assert video["sha256"] != other["sha256"]
    [both] = never_fetched(api, acme)  # nothing fetched yet: both executions, in one suggestion
    assert (both["estimatedSavingUsd"], both["executions"]) == (6.0, sorted([watched, ignored]))

    # A player's range requests: one fetch. A HEAD and the thumbnail are no fetch.
    assert api.client.head(video["url"]).status_code == 200
    assert api.client.get(video["url"].replace("/videos/", "/thumbnails/").replace(".mp4", ".jpg")).status_code == 200
    assert VideoFetches(api.store).get(video["sha256"]) is None
    head = api.client.get(video["url"], headers={"Range": "bytes=0-1023"})
    rest = api.client.get(video["url"], headers={"Range": "bytes=1024-"})
    assert (head.status_code, rest.status_code) == (206, 206)
    assert hashlib.sha256(head.content + rest.content).hexdigest() == video["sha256"]
    fetched = VideoFetches(api.store).get(video["sha256"])
    assert fetched is not None and fetched.fetches == 1

    [found] = never_fetched(api, acme)
    assert (found["estimatedSavingUsd"], found["executions"]) == (3.0, [ignored])
    assert "1 completed execution(s) of acme made 1 final video(s) that nobody has downloaded" in found["message"]
    assert never_fetched(api, api.key("globex")) == []  # another tenant's records hold nothing

    # Within the default grace period (a day), nothing is suggested yet.
    assert never_fetched(make_api(allowed_hosts=LOOPBACK, public_url=API), acme) == []
    # Where result URLs are not this API's (a CDN, another server of the folder), their fetches are not seen:
    # nothing is suggested for them.
    elsewhere = make_api(allowed_hosts=LOOPBACK, public_url="https://api.example.com", unfetched_grace_seconds=0)
    assert never_fetched(elsewhere, acme) == []


def test_an_s3_result_url_redirects_through_the_api_to_a_presigned_download_and_is_recorded(
    make_api: ApiFactory, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("VIDEO_PIPELINES_STORAGE_URL", f"s3://{s3_bucket}/renders")
    monkeypatch.setenv("VIDEO_PIPELINES_PUBLIC_URL", API)
    api = make_api(public_url=API)
    acme = api.key("acme")
    execution_id = submit(
        api, acme, {"jobs": [{"id": "clip", "type": "generate", "params": {"prompt": "a", "duration": 1}}]}
    )
    run_submitted(api)
    video = result_of(api, acme, execution_id)
    key = f"videos/{video['sha256'][:2]}/{video['sha256']}.mp4"
    assert video["url"] == f"{API}/artifacts/{key}"  # the API's URL: it never expires

    answer = api.client.get(video["url"], follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    assert location.startswith(f"{s3_endpoint}/{s3_bucket}/renders/{key}?") and "X-Amz-Signature=" in location
    downloaded = httpx.get(location, timeout=30)
    assert downloaded.status_code == 200 and hashlib.sha256(downloaded.content).hexdigest() == video["sha256"]
    fetched = VideoFetches(api.store).get(video["sha256"])
    assert fetched is not None and fetched.fetches == 1

    # A HEAD goes to a URL signed for HEAD; it is no fetch.
    head = api.client.head(video["url"], follow_redirects=False)
    assert head.status_code == 307
    checked = httpx.head(head.headers["location"], timeout=30)
    assert checked.status_code == 200 and int(checked.headers["content-length"]) == video["sizeBytes"]
    # A well-formed key with nothing stored is a 404, and nothing is recorded for it.
    missing = "ab" * 32
    assert api.client.get(f"/artifacts/videos/ab/{missing}.mp4", follow_redirects=False).status_code == 404
    assert VideoFetches(api.store).get(missing) is None
    assert VideoFetches(api.store).get(video["sha256"]) == fetched


def test_the_grace_period_and_the_apis_urls_are_read_from_the_environment() -> None:
    default = ApiSettings.from_env({})
    assert default.unfetched_grace_seconds == 86400 and default.artifact_urls == ("http://127.0.0.1:8080/artifacts/",)
    settings = ApiSettings.from_env(
        {"VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS": "0", "VIDEO_PIPELINES_PUBLIC_URL": "https://api.example.com/"}
    )
    assert settings.unfetched_grace_seconds == 0
    assert settings.artifact_urls == ("https://api.example.com/artifacts/", "http://127.0.0.1:8080/artifacts/")
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(UsageError, match="VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS"):
            ApiSettings.from_env({"VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS": bad})
