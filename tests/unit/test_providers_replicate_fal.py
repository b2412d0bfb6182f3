"""The Replicate and fal adapters against real HTTP servers on 127.0.0.1 that play each protocol's life cycle."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest

from video_pipelines.errors import ProviderError, ProviderHttpError, TransientProviderError
from video_pipelines.net import parse_allowed_hosts
from video_pipelines.net.retrying import parse_retry_after
from video_pipelines.providers import http as provider_http
from video_pipelines.providers.base import GenerationRequest, LipSyncRequest, NoLedger
from video_pipelines.providers.fal import FalProvider, app_id
from video_pipelines.providers.http import HttpPolicy, remote_input
from video_pipelines.providers.replicate import ReplicateProvider, output_url

from ..http_servers import serve_in_background, shut_down

TOKEN = "tok-Secret-8f3a91"
LOOPBACK = parse_allowed_hosts("127.0.0.1")
FAST = HttpPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=5.0, request_timeout=5.0)
POLL = 0.05
GENERATION = GenerationRequest(
    prompt="A red fox in the snow", duration=3, width=160, height=90, aspect_ratio="9:16", seed=7, model=None
)
AUDIO_URL = "https://cdn.example.com/voices/fr.mp3"

Answer = tuple[int, dict[str, str], Any]


@dataclass
class Seen:
    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Job:
    id: str
    outcome: str  # succeed | fail | never
    app: str = ""
    model: str = ""  # what the request named: `owner/name`, a Replicate version, a fal model path
    polls: int = 0
    canceled: bool = False


# Spoken words a speech model answers: (start, end or None as Whisper sometimes gives, text).
SpokenWord = tuple[float, float | None, str]
DEFAULT_WORDS: list[SpokenWord] = [(0.0, 0.42, "Guten"), (0.42, 0.9, "Morgen,"), (1.1, 1.5, "Welt.")]
SPEECH_VERSIONS = {
    "3ab86df6c8f54c11309d4d1f930ac292bad43ace52d10c80d87eb258b3c9f79c": "vaibhavs10/incredibly-fast-whisper"
}


def whisper_chunks(words: list[SpokenWord]) -> dict[str, Any]:
    """What Hugging Face's Whisper pipeline answers with word timestamps (incredibly-fast-whisper, fal-ai/whisper)."""
    return {
        "text": " ".join(text for _, _, text in words),
        "chunks": [{"timestamp": [start, end], "text": f" {text}"} for start, end, text in words],
    }


@dataclass
class FakeApi:
    """A provider API on 127.0.0.1: checks auth, records every request, answers `script[kind]` first."""

    auth: str
    output: bytes
    outcome: str = "succeed"
    polls_to_finish: int = 2
    words: list[SpokenWord] = field(default_factory=lambda: list(DEFAULT_WORDS))
    transcript: Any = None  # what a speech model answers instead of `whisper_chunks(words)`
    script: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)  # what was PUT to a pre-signed upload URL, by path
    port: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, body = api.dispatch(self.command, self.path, dict(self.headers.items()), raw)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                if not isinstance(body, bytes):
                    self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = serve_in_background(Handler, poll_interval=0.05)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file_url(self) -> str:
        return f"{self.base_url}/files/output.mp4"

    def new_job(self, outcome: str | None = None, app: str = "", model: str = "") -> Job:
        job = Job(id=f"job-{next(self._ids)}", outcome=outcome or self.outcome, app=app, model=model)
        self.jobs[job.id] = job
        return job

    def speech_output(self) -> Any:
        return self.transcript if self.transcript is not None else whisper_chunks(self.words)

    @staticmethod
    def is_speech(job: Job) -> bool:
        return "whisper" in SPEECH_VERSIONS.get(job.model, job.model) or "wizper" in job.model

    def seen(self, kind: str) -> list[Seen]:
        with self._lock:
            return [request for request in self.requests if request.kind == kind]

    def dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        kind, job_id = self.classify(method, path)
        content_type = headers.get("Content-Type", "")
        body: Any = None
        if content_type.startswith("multipart/form-data"):
            body = multipart_file(content_type, raw)
        elif raw and content_type.startswith("application/json"):
            body = json.loads(raw)
        with self._lock:
            self.requests.append(Seen(kind, method, path, headers, body, time.monotonic()))
            if kind == "file":
                return 200, {"Content-Type": "video/mp4"}, self.output
            if kind == "signed_put":  # a pre-signed upload URL: its signature is the credential, no key
                self.stored[path] = raw
                return 200, {}, b""
            if headers.get("Authorization") != self.auth:
                return self.unauthorized(headers.get("Authorization", ""))
            scripted = self.script.get(kind)
            if scripted:
                return scripted.pop(0)
            if kind == "create":
                return self.created(self.new_job(app=self.app_of(path), model=self.model_of(path, body)))
            if kind == "upload":
                return self.uploaded(body)
            job = self.jobs.get(job_id or "")
            if job is None:
                return 404, {}, {"detail": "Not found."}
            return self.answer(kind, job)

    def app_of(self, path: str) -> str:
        return ""

    def model_of(self, path: str, body: Any) -> str:
        return path.strip("/")

    def classify(self, method: str, path: str) -> tuple[str, str | None]:
        raise NotImplementedError

    def unauthorized(self, given: str) -> Answer:
        raise NotImplementedError

    def uploaded(self, upload: Any) -> Answer:
        return 404, {}, {"detail": "Not found."}

    def created(self, job: Job) -> Answer:
        raise NotImplementedError

    def answer(self, kind: str, job: Job) -> Answer:
        raise NotImplementedError


def multipart_file(content_type: str, raw: bytes) -> dict[str, Any]:
    """The one file part of a multipart/form-data body, read with the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    [part] = message.iter_parts()  # type: ignore[attr-defined]
    return {
        "field": part.get_param("name", header="content-disposition"),
        "filename": part.get_filename(),
        "content_type": part.get_content_type(),
        "content": part.get_payload(decode=True),
    }


class FakeReplicate(FakeApi):
    """Replicate's HTTP API v1: predictions that go starting -> processing -> succeeded/failed, and
    the files API (`POST /v1/files`, multipart field `content`) that keeps what is uploaded."""

    def classify(self, method: str, path: str) -> tuple[str, str | None]:
        parts = path.strip("/").split("/")
        if parts[0] == "files":
            return "file", None
        if method == "POST" and parts == ["v1", "files"]:
            return "upload", None
        if method == "POST" and (parts == ["v1", "predictions"] or (parts[:2] == ["v1", "models"] and len(parts) == 5)):
            return "create", None
        if method == "GET" and parts[:2] == ["v1", "predictions"] and len(parts) == 3:
            return "status", parts[2]
        if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
            return "cancel", parts[2]
        return "unknown", None

    def model_of(self, path: str, body: Any) -> str:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "models"]:
            return "/".join(parts[2:4])
        return str(body.get("version", "")) if isinstance(body, dict) else ""

    def unauthorized(self, given: str) -> Answer:
        # Echoes what it was given, as some APIs do: the adapter must not repeat it.
        return 401, {}, {"title": "Unauthenticated", "detail": f"Invalid token {given!r}", "status": 401}

    def prediction(self, job: Job, status: str, **extra: Any) -> dict[str, Any]:
        urls = {
            "get": f"{self.base_url}/v1/predictions/{job.id}",
            "cancel": f"{self.base_url}/v1/predictions/{job.id}/cancel",
        }
        return {"id": job.id, "status": status, "output": None, "error": None, "urls": urls, **extra}

    def created(self, job: Job) -> Answer:
        return 201, {}, self.prediction(job, "starting")

    def uploaded(self, upload: Any) -> Answer:
        file_id = f"file-{next(self._ids)}"
        size = len(upload["content"])
        return 201, {}, {
            "id": file_id, "name": upload["filename"], "content_type": upload["content_type"], "size": size,
            "urls": {"get": f"https://api.replicate.com/v1/files/{file_id}"},
        }  # fmt: skip

    def answer(self, kind: str, job: Job) -> Answer:
        if kind == "cancel":
            job.canceled = True
            return 200, {}, self.prediction(job, "canceled")
        job.polls += 1
        if job.canceled:
            return 200, {}, self.prediction(job, "canceled")
        if job.polls <= self.polls_to_finish or job.outcome == "never":
            return 200, {}, self.prediction(job, "starting" if job.polls == 1 else "processing")
        if job.outcome == "fail":
            return 200, {}, self.prediction(job, "failed", error="CUDA out of memory: the model crashed")
        if self.is_speech(job):
            return 200, {}, self.prediction(job, "succeeded", output=self.speech_output())
        return 200, {}, self.prediction(job, "succeeded", output=[self.file_url()])


FakeReplicateT = TypeVar("FakeReplicateT", bound=FakeReplicate)


@contextmanager
def serving_replicate(api: FakeReplicateT, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReplicateT]:
    """`api` started on 127.0.0.1 and this process's Replicate adapter pointed at it (token, base
    URL, the loopback host allowed); stopped afterwards."""
    api.start()
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_API_BASE_URL", api.base_url)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    try:
        yield api
    finally:
        api.stop()


class FakeFal(FakeApi):
    """fal's queue API: requests that go IN_QUEUE -> IN_PROGRESS -> COMPLETED, results under the app id;
    and its storage: `POST /storage/upload/initiate` answers a pre-signed URL that takes a PUT."""

    foreign_urls: bool = False

    def classify(self, method: str, path: str) -> tuple[str, str | None]:
        parts = path.strip("/").split("?")[0].split("/")
        if parts[0] == "files":
            return "file", None
        if method == "POST" and parts == ["storage", "upload", "initiate"]:
            return "upload", None
        if method == "PUT" and parts[0] == "signed-upload":
            return "signed_put", None
        if "requests" not in parts:
            return ("create", None) if method == "POST" else ("unknown", None)
        if parts.index("requests") != 2 or len(parts) < 4:
            return "unknown", None
        tail = parts[4:]
        if method == "GET" and tail == ["status"]:
            return "status", parts[3]
        if method == "GET" and not tail:
            return "result", parts[3]
        if method == "PUT" and tail == ["cancel"]:
            return "cancel", parts[3]
        return "unknown", None

    def app_of(self, path: str) -> str:
        return "/".join(path.strip("/").split("?")[0].split("/")[:2])

    def model_of(self, path: str, body: Any) -> str:
        return path.strip("/").split("?")[0]

    def uploaded(self, upload: Any) -> Answer:
        file_id = f"f{next(self._ids)}"
        return 200, {}, {
            "upload_url": f"{self.base_url}/signed-upload/{file_id}?X-Goog-Signature=abc",
            "file_url": f"https://v3.fal.media/files/{file_id}/{upload['file_name']}",
        }  # fmt: skip

    def unauthorized(self, given: str) -> Answer:
        return 401, {}, {"detail": f"Authentication failed for key {given!r}"}

    def created(self, job: Job) -> Answer:
        root = "http://203.0.113.9" if self.foreign_urls else self.base_url
        response_url = f"{root}/{job.app}/requests/{job.id}"
        return (
            200,
            {},
            {
                "request_id": job.id,
                "status_url": f"{response_url}/status",
                "response_url": response_url,
                "cancel_url": f"{response_url}/cancel",
            },
        )

    def answer(self, kind: str, job: Job) -> Answer:
        if kind == "cancel":
            job.canceled = True
            return 202, {}, {"status": "CANCELLATION_REQUESTED"}
        if kind == "result":
            if job.outcome == "fail":
                detail = [
                    {"loc": ["body", "prompt"], "msg": "The prompt was flagged by the content checker", "type": "x"}
                ]
                return 422, {}, {"detail": detail}
            if self.is_speech(job):
                return 200, {}, {**self.speech_output(), "inferred_languages": ["de"], "diarization_segments": []}
            return 200, {}, {"video": {"url": self.file_url(), "content_type": "video/mp4"}}
        job.polls += 1
        if job.polls <= self.polls_to_finish or job.outcome == "never" or job.canceled:
            return 202, {}, {"status": "IN_QUEUE" if job.polls == 1 else "IN_PROGRESS"}
        return 200, {}, {"status": "COMPLETED"}


class RecordingLedger:
    """Remembers one id, and what the server had seen when it was told."""

    def __init__(self, api: FakeApi, job_id: str | None = None) -> None:
        self.api = api
        self.job_id = job_id
        self.polls_before_remember: int | None = None

    def recall(self) -> str | None:
        return self.job_id

    def remember(self, job_id: str) -> None:
        self.polls_before_remember = len(self.api.seen("status"))
        self.job_id = job_id


@dataclass
class Harness:
    name: str
    api: FakeApi
    make: Callable[..., Any]

    def job_id(self, request: str) -> str:
        """The id a ledger keeps for the provider's request `request` (fal's carries the default video app)."""
        return f"fal-ai/kling-video/{request}" if self.name == "fal" else request


@pytest.fixture(params=["replicate", "fal"])
def harness(request: pytest.FixtureRequest, clip: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    if request.param == "replicate":
        api: FakeApi = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip).start()

        def make(token: str = TOKEN, **kwargs: Any) -> Any:
            kwargs.setdefault("http", FAST)
            return ReplicateProvider(token, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, **kwargs)

    else:
        api = FakeFal(auth=f"Key {TOKEN}", output=clip).start()
        monkeypatch.setenv("FAL_STORAGE_BASE_URL", api.base_url)

        def make(token: str = TOKEN, **kwargs: Any) -> Any:
            kwargs.setdefault("http", FAST)
            return FalProvider(token, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, **kwargs)

    try:
        yield Harness(request.param, api, make)
    finally:
        api.stop()


def created_input(harness: Harness) -> dict[str, Any]:
    (create,) = harness.api.seen("create")
    body: dict[str, Any] = create.body["input"] if harness.name == "replicate" else create.body
    return body


def lip_sync_request(tmp_path: Path, clip: bytes) -> LipSyncRequest:
    video = tmp_path / "input0.mp4"
    video.write_bytes(clip)
    audio = tmp_path / "audio"
    audio.write_bytes(b"ID3 fake mp3")
    return LipSyncRequest(video=video, video_url=video.as_uri(), audio=audio, audio_url=AUDIO_URL, model=None)


# ---- the happy paths ----


def test_generate_writes_the_output_the_provider_served(harness: Harness, tmp_path: Path, clip: bytes) -> None:
    out = tmp_path / "out.mp4"
    harness.make().generate(GENERATION, out, timeout=30, ledger=NoLedger())

    assert out.read_bytes() == clip
    sent = created_input(harness)
    assert sent["prompt"] == "A red fox in the snow"
    assert sent["aspect_ratio"] == "9:16"
    assert sent["seed"] == 7
    assert str(sent["duration"]) == "3"
    api_calls = [request for request in harness.api.requests if request.kind != "file"]
    expected_auth = f"Bearer {TOKEN}" if harness.name == "replicate" else f"Key {TOKEN}"
    assert {request.headers["Authorization"] for request in api_calls} == {expected_auth}
    assert len(harness.api.seen("status")) == harness.api.polls_to_finish + 1
    (download,) = harness.api.seen("file")
    assert "Authorization" not in download.headers  # the token never travels to the file host
    assert not harness.api.seen("cancel")


def test_generate_calls_the_documented_endpoints(harness: Harness, tmp_path: Path) -> None:
    harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())

    (create,) = harness.api.seen("create")
    job_id = next(iter(harness.api.jobs))
    if harness.name == "replicate":
        assert create.path == "/v1/models/kwaivgi/kling-v1.6-standard/predictions"
        assert {request.path for request in harness.api.seen("status")} == {f"/v1/predictions/{job_id}"}
    else:
        assert create.path == "/fal-ai/kling-video/v1.6/standard/text-to-video"
        assert {request.path for request in harness.api.seen("status")} == {
            f"/fal-ai/kling-video/requests/{job_id}/status"
        }
        assert [request.path for request in harness.api.seen("result")] == [f"/fal-ai/kling-video/requests/{job_id}"]


def test_lip_sync_sends_a_local_video_inline_and_the_audio_url_as_is(
    harness: Harness, tmp_path: Path, clip: bytes
) -> None:
    out = tmp_path / "out.mp4"
    harness.make().lip_sync(lip_sync_request(tmp_path, clip), out, timeout=30, ledger=NoLedger())

    assert out.read_bytes() == clip
    sent = created_input(harness)
    video_field, audio_field = (
        ("video_url", "audio_file") if harness.name == "replicate" else ("video_url", "audio_url")
    )
    assert sent[video_field] == "data:video/mp4;base64," + base64.b64encode(clip).decode()
    assert sent[audio_field] == AUDIO_URL
    if harness.name == "replicate":
        assert harness.api.seen("create")[0].path == "/v1/models/kwaivgi/kling-lip-sync/predictions"
    else:
        assert harness.api.seen("create")[0].path == "/fal-ai/sync-lipsync"


def test_lip_sync_passes_an_http_video_url_through(harness: Harness, tmp_path: Path, clip: bytes) -> None:
    request = lip_sync_request(tmp_path, clip)
    stored = "https://bucket.s3.example.com/exec/job1.mp4?X-Amz-Signature=abc"
    request = LipSyncRequest(request.video, stored, request.audio, request.audio_url, "acme/lipsync")
    harness.make().lip_sync(request, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())

    sent = created_input(harness)
    assert stored in sent.values()
    if harness.name == "replicate":
        assert sent == {"video": stored, "audio": AUDIO_URL}  # models not in the table take video/audio


def test_a_local_video_over_the_inline_limit_is_uploaded_to_the_providers_storage(
    harness: Harness, tmp_path: Path, clip: bytes
) -> None:
    request = lip_sync_request(tmp_path, clip)
    harness.make(max_inline_bytes=1024).lip_sync(request, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    [upload] = harness.api.seen("upload")
    assert upload.headers["Authorization"] == (f"Bearer {TOKEN}" if harness.name == "replicate" else f"Key {TOKEN}")
    sent = created_input(harness)
    if harness.name == "replicate":
        assert upload.body == {
            "field": "content",
            "filename": "input0.mp4",
            "content_type": "video/mp4",
            "content": clip,
        }
        assert sent["video_url"] == "https://api.replicate.com/v1/files/file-1"
    else:
        assert upload.path == "/storage/upload/initiate?storage_type=fal-cdn-v3"
        assert upload.body == {"file_name": "input0.mp4", "content_type": "video/mp4"}
        [put] = harness.api.seen("signed_put")
        assert "Authorization" not in put.headers  # the key never travels to the storage host
        assert put.headers["Content-Type"] == "video/mp4"
        assert harness.api.stored == {put.path: clip}
        assert sent["video_url"] == "https://v3.fal.media/files/f1/input0.mp4"
    # The model reads the uploaded copy; the small audio still travels as it came (a URL here).
    assert sent["audio_url" if harness.name == "fal" else "audio_file"] == AUDIO_URL
    assert [request.kind for request in harness.api.requests].index("create") > 0  # uploaded first


def test_replicate_sends_inline_only_under_1_mb_and_uploads_up_to_100_mb(clip: bytes, tmp_path: Path) -> None:
    provider = ReplicateProvider(TOKEN, base_url="http://127.0.0.1:9", allowed=LOOPBACK, http=FAST)
    assert (provider.max_inline_bytes, provider.max_upload_bytes) == (1024 * 1024, 100 * 1024 * 1024)
    provider.max_upload_bytes = 1024
    big = tmp_path / "big.mp4"
    big.write_bytes(clip[:2048].ljust(2048, b"\0"))
    with pytest.raises(ProviderError, match=r"big.mp4 \(2048 bytes\) is larger than the 1024 bytes.*s3://"):
        provider._upload(big, "video/mp4")


def test_an_output_that_is_not_a_video_still_arrives(harness: Harness, tmp_path: Path) -> None:
    # The caller's probe rejects it; the adapter only delivers the bytes.
    harness.api.output = b"<html>not a video</html>"
    out = tmp_path / "out.mp4"
    harness.make().generate(GENERATION, out, timeout=30, ledger=NoLedger())
    assert out.read_bytes() == b"<html>not a video</html>"


# ---- retries and refusals ----


def test_429_waits_for_retry_after(harness: Harness, tmp_path: Path, clip: bytes) -> None:
    harness.api.script["create"] = [(429, {"Retry-After": "1"}, {"detail": "Request was throttled."})]
    out = tmp_path / "out.mp4"
    harness.make().generate(GENERATION, out, timeout=30, ledger=NoLedger())

    first, second = harness.api.seen("create")
    assert second.at - first.at >= 0.9  # the backoff alone (FAST) would be a few hundredths
    assert out.read_bytes() == clip


def test_5xx_while_polling_is_retried(harness: Harness, tmp_path: Path, clip: bytes) -> None:
    harness.api.script["status"] = [(500, {}, {"detail": "Internal server error"}), (503, {}, b"upstream down")]
    out = tmp_path / "out.mp4"
    harness.make().generate(GENERATION, out, timeout=30, ledger=NoLedger())
    assert out.read_bytes() == clip
    assert not harness.api.seen("cancel")


def test_5xx_every_time_gives_up_as_transient(harness: Harness, tmp_path: Path) -> None:
    harness.api.script["create"] = [(502, {}, {"detail": "Bad gateway"})] * 5
    with pytest.raises(TransientProviderError, match=r"after 3 attempts.*Bad gateway"):
        harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert len(harness.api.seen("create")) == 3


def test_a_transient_error_while_polling_leaves_the_job_running_for_the_retry(harness: Harness, tmp_path: Path) -> None:
    harness.api.script["status"] = [(500, {}, {"detail": "Internal server error"})] * 3
    ledger = RecordingLedger(harness.api)
    with pytest.raises(TransientProviderError):
        harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=ledger)
    assert ledger.job_id is not None and ledger.job_id.rpartition("/")[2] in harness.api.jobs
    assert not harness.api.seen("cancel")


def test_401_fails_at_once_with_the_provider_message_and_never_the_token(harness: Harness, tmp_path: Path) -> None:
    wrong = "wrong-Token-77c2"
    with pytest.raises(ProviderHttpError) as caught:
        harness.make(token=wrong).generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())

    message = str(caught.value)
    assert caught.value.status_code == 401
    assert "401" in message
    assert ("Invalid token" if harness.name == "replicate" else "Authentication failed") in message
    assert wrong not in message and TOKEN not in message
    assert len(harness.api.requests) == 1


def test_422_fails_at_once_with_the_provider_message(harness: Harness, tmp_path: Path) -> None:
    detail = "duration: must be one of 5, 10"
    harness.api.script["create"] = [(422, {}, {"title": "Input validation failed", "detail": detail, "status": 422})]
    with pytest.raises(ProviderHttpError, match=r"HTTP 422.*duration: must be one of 5, 10") as caught:
        harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    assert TOKEN not in str(caught.value)
    assert len(harness.api.seen("create")) == 1


def test_a_failed_job_raises_the_provider_error_text(harness: Harness, tmp_path: Path) -> None:
    harness.api.outcome = "fail"
    out = tmp_path / "out.mp4"
    expected = "CUDA out of memory" if harness.name == "replicate" else "flagged by the content checker"
    with pytest.raises(ProviderError, match=expected) as caught:
        harness.make().generate(GENERATION, out, timeout=30, ledger=NoLedger())
    assert not isinstance(caught.value, TransientProviderError)
    assert not out.exists()
    assert not harness.api.seen("cancel")


# ---- timeouts, interrupts and the ledger ----


def test_timeout_cancels_the_job(harness: Harness, tmp_path: Path) -> None:
    harness.api.outcome = "never"
    out = tmp_path / "out.mp4"
    with pytest.raises(ProviderError, match=rf"job {harness.job_id('job-1')} did not finish within 0\.3 s; canceled"):
        harness.make().generate(GENERATION, out, timeout=0.3, ledger=NoLedger())
    (cancel,) = harness.api.seen("cancel")
    assert "job-1" in cancel.path
    assert harness.api.jobs["job-1"].canceled
    assert not out.exists()


def test_an_interrupt_while_polling_cancels_the_job_and_propagates(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.api.outcome = "never"
    naps: list[float] = []

    def interrupted_sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt
        time.sleep(seconds)

    monkeypatch.setattr(provider_http, "_sleep", interrupted_sleep)
    with pytest.raises(KeyboardInterrupt):
        harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=None, ledger=NoLedger())
    assert [request.kind for request in harness.api.requests][-1] == "cancel"
    assert harness.api.jobs["job-1"].canceled


def test_an_interrupt_before_the_job_is_remembered_cancels_it(harness: Harness, tmp_path: Path) -> None:
    class InterruptedLedger(NoLedger):
        def remember(self, job_id: str) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=InterruptedLedger())
    assert harness.api.jobs["job-1"].canceled
    assert not harness.api.seen("status")


def test_the_ledger_learns_the_job_before_the_first_poll(harness: Harness, tmp_path: Path) -> None:
    ledger = RecordingLedger(harness.api)
    harness.make().generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=ledger)
    assert ledger.job_id == harness.job_id("job-1")
    assert ledger.polls_before_remember == 0


def test_a_remembered_job_is_resumed_not_created_again(harness: Harness, tmp_path: Path, clip: bytes) -> None:
    app = "fal-ai/kling-video" if harness.name == "fal" else ""
    job = harness.api.new_job(app=app)
    job.polls = 1  # it was already polled by the attempt that failed
    out = tmp_path / "out.mp4"
    harness.make().generate(GENERATION, out, timeout=30, ledger=RecordingLedger(harness.api, job.id))

    assert out.read_bytes() == clip
    assert not harness.api.seen("create")
    assert harness.api.seen("status")
    assert all(job.id in request.path for request in harness.api.seen("status"))


# ---- provider specifics ----


def test_replicate_pinned_version_uses_the_predictions_endpoint(clip: bytes, tmp_path: Path) -> None:
    api = FakeReplicate(auth=f"Bearer {TOKEN}", output=clip).start()
    try:
        provider = ReplicateProvider(
            TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST, video_model="acme/t2v:abc123"
        )
        provider.generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    finally:
        api.stop()
    (create,) = api.seen("create")
    assert create.path == "/v1/predictions"
    assert create.body["version"] == "abc123"
    assert create.body["input"]["prompt"] == GENERATION.prompt


@pytest.mark.parametrize("model", ["noslash", "a/b/c", "a/b:"])
def test_replicate_rejects_a_malformed_model(model: str, tmp_path: Path) -> None:
    provider = ReplicateProvider(TOKEN, base_url="http://127.0.0.1:9", allowed=LOOPBACK, video_model=model)
    with pytest.raises(ProviderError, match="owner/name"):
        provider.generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())


def test_replicate_output_shapes() -> None:
    assert output_url("https://x/a.mp4") == "https://x/a.mp4"
    assert output_url(["https://x/poster.png", "https://x/clip.mp4?sig=1"]) == "https://x/clip.mp4?sig=1"
    assert output_url(["https://x/file"]) == "https://x/file"
    assert output_url({"video": "https://x/v.mp4"}) == "https://x/v.mp4"
    assert output_url(None) is None
    assert output_url([]) is None


def test_fal_does_not_follow_urls_off_its_base(clip: bytes, tmp_path: Path) -> None:
    api = FakeFal(auth=f"Key {TOKEN}", output=clip)
    api.foreign_urls = True
    api.start()
    try:
        provider = FalProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)
        out = tmp_path / "out.mp4"
        provider.generate(GENERATION, out, timeout=30, ledger=NoLedger())
    finally:
        api.stop()
    assert out.read_bytes() == clip
    assert api.seen("status")[0].path == "/fal-ai/kling-video/requests/job-1/status"


def test_fal_completed_with_an_error_raises_it(clip: bytes, tmp_path: Path) -> None:
    api = FakeFal(auth=f"Key {TOKEN}", output=clip).start()
    api.script["status"] = [(200, {}, {"status": "COMPLETED", "error": "Runner crashed: out of memory"})]
    try:
        provider = FalProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)
        with pytest.raises(ProviderError, match="Runner crashed: out of memory"):
            provider.generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    finally:
        api.stop()
    assert not api.seen("result") and not api.seen("cancel")


def test_fal_follows_and_cancels_a_job_by_its_id_alone(clip: bytes) -> None:
    api = FakeFal(auth=f"Key {TOKEN}", output=clip).start()
    try:
        provider = FalProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)
        # A lip-sync request, followed by a provider whose default model is a video one: the id names the app.
        running = api.new_job(outcome="never", app="fal-ai/sync-lipsync")
        assert not provider.job_finished(f"fal-ai/sync-lipsync/{running.id}")
        assert provider.cancel_job(f"fal-ai/sync-lipsync/{running.id}") and running.canceled
        done = api.new_job(app="fal-ai/kling-video")
        done.polls = api.polls_to_finish
        assert provider.job_finished(f"fal-ai/kling-video/{done.id}")
        assert [request.path for request in api.seen("status")] == [
            f"/fal-ai/sync-lipsync/requests/{running.id}/status",
            f"/fal-ai/kling-video/requests/{done.id}/status",
        ]
        assert [request.path for request in api.seen("cancel")] == [
            f"/fal-ai/sync-lipsync/requests/{running.id}/cancel"
        ]
        # Our key goes to these URLs: an id that is not `owner/app/<request>` is refused before any request.
        for bad in (done.id, f"../fal-ai/{done.id}", f"fal-ai/../{done.id}", "fal-ai/kling-video/"):
            with pytest.raises(ProviderError, match="not a fal job id"):
                provider.job_finished(bad)
            with pytest.raises(ProviderError, match="not a fal job id"):
                provider.cancel_job(bad)
        assert len(api.seen("status")) == 2 and len(api.seen("cancel")) == 1
    finally:
        api.stop()


def test_fal_requests_carry_our_webhook_where_the_deployment_has_a_public_url(
    clip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_PUBLIC_URL", "https://videos.example.com/")
    api = FakeFal(auth=f"Key {TOKEN}", output=clip).start()
    try:
        provider = FalProvider(TOKEN, base_url=api.base_url, allowed=LOOPBACK, poll_interval=POLL, http=FAST)
        provider.generate(GENERATION, tmp_path / "out.mp4", timeout=30, ledger=NoLedger())
    finally:
        api.stop()
    [create] = api.seen("create")
    path, _, query = create.path.partition("?")
    assert path == "/fal-ai/kling-video/v1.6/standard/text-to-video"
    assert parse_qs(query) == {
        "fal_webhook": ["https://videos.example.com/api/providers/fal/webhook?app=fal-ai%2Fkling-video"]
    }
    assert create.body["prompt"] == GENERATION.prompt


def test_fal_app_id() -> None:
    assert app_id("fal-ai/kling-video/v1.6/standard/text-to-video") == "fal-ai/kling-video"
    assert app_id("fal-ai/sync-lipsync") == "fal-ai/sync-lipsync"
    with pytest.raises(ProviderError):
        app_id("lonely")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ProviderError, match="REPLICATE_API_TOKEN"):
        ReplicateProvider("", allowed=LOOPBACK)
    with pytest.raises(ProviderError, match="FAL_KEY"):
        FalProvider("", allowed=LOOPBACK)


# ---- the shared helpers ----


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=10), usegmt=True), now=now) == 10.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=10), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_remote_input(tmp_path: Path) -> None:
    audio = tmp_path / "voice.wav"
    audio.write_bytes(b"RIFF")
    assert remote_input("https://cdn/x.wav", audio, provider="p", what="audio") == "https://cdn/x.wav"
    assert remote_input(audio.as_uri(), audio, provider="p", what="audio").startswith("data:audio/")
    untyped = tmp_path / "audio"
    untyped.write_bytes(b"ID3")
    assert remote_input("file:///x/voice.mp3", untyped, provider="p", what="audio").startswith(
        "data:audio/mpeg;base64,"
    )


def test_remote_input_inlines_an_artifact_our_own_api_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `video-pipelines dev` local artifacts have http URLs on 127.0.0.1, which no provider can reach."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    monkeypatch.setenv("VIDEO_PIPELINES_ARTIFACTS_BASE_URL", "http://127.0.0.1:8080/artifacts/")
    served = "http://127.0.0.1:8080/artifacts/videos/ab/ab.mp4"
    assert remote_input(served, video, provider="p", what="video").startswith("data:video/mp4;base64,")
    assert remote_input("https://cdn/x.mp4", video, provider="p", what="video") == "https://cdn/x.mp4"
