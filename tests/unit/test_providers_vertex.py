"""The Vertex AI (Veo) adapter against a local Google: a token endpoint and a Vertex server on 127.0.0.1.

The token endpoint checks the JWT bearer assertion the way Google does (RS256 signature with
the service account's public key; iss, aud, scope, exp), and the Vertex server checks the
bearer token and plays the documented operation life cycle with a real MP4.
"""

from __future__ import annotations

import _thread
import base64
import ipaddress
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from video_pipelines.errors import ProviderError, TransientProviderError
from video_pipelines.net import AllowedHosts
from video_pipelines.net.retrying import parse_retry_after
from video_pipelines.operations import generate_clip
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.providers.base import GenerationRequest
from video_pipelines.providers.context import parking_allowed
from video_pipelines.providers.http import HttpPolicy, Parked
from video_pipelines.providers.vertex import CLOUD_PLATFORM_SCOPE, JWT_BEARER_GRANT, VertexVeoProvider

PROJECT = "test-project"
EMAIL = "veo-runner@test-project.iam.gserviceaccount.com"
MODEL = "veo-2.0-generate-001"
LOOPBACK = AllowedHosts(addresses=frozenset({ipaddress.ip_address("127.0.0.1")}))
FAST = HttpPolicy(base_delay=0.01)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Reply:
    status: int
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    kind: str  # token, predict, fetch, cancel
    path: str
    body: dict[str, Any]
    authorization: str | None
    at: float


class FakeGoogle:
    """Google's token endpoint and the Veo endpoints of Vertex AI, scripted per test."""

    def __init__(self, public_key: rsa.RSAPublicKey, video: bytes) -> None:
        self.public_key = public_key
        self.video = video
        self.url = ""
        self.calls: list[Call] = []
        self.scripts: dict[str, deque[Reply]] = {k: deque() for k in ("token", "predict", "fetch", "cancel")}
        self.valid_tokens: set[str] = set()
        self.not_done_polls = 2
        self.never_done = False
        self.done_reply: dict[str, Any] | None = None
        self.on_fetch: Callable[[int], None] | None = None
        self._polls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ops = 0
        self._tokens = 0

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def of(self, kind: str) -> list[Call]:
        return [call for call in self.calls if call.kind == kind]

    def new_operation(self) -> str:
        with self._lock:
            self._ops += 1
            return f"projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}/operations/op{self._ops}"

    # Endpoint logic (called from the handler threads)

    def handle(self, path: str, raw: bytes, authorization: str | None) -> Reply:
        kind = (
            "token"
            if path == "/token"
            else next((k for k in ("predict", "fetch", "cancel") if path.endswith(_SUFFIXES[k])), "unknown")
        )
        body: dict[str, Any] = (
            {k: v[0] for k, v in parse_qs(raw.decode()).items()} if kind == "token" else json.loads(raw or b"{}")
        )
        with self._lock:
            self.calls.append(Call(kind, path, body, authorization, time.monotonic()))
            scripted = self.scripts[kind].popleft() if self.scripts.get(kind) else None
        if scripted is not None:
            return scripted
        if kind == "token":
            return self._token(body)
        if authorization is None or authorization.removeprefix("Bearer ") not in self.valid_tokens:
            return Reply(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}})
        if kind == "predict":
            return Reply(200, {"name": self.new_operation()})
        if kind == "fetch":
            return self._fetch(body["operationName"])
        if kind == "cancel":
            return Reply(200, {})
        return Reply(404, {"error": {"code": 404, "message": f"no such endpoint {path}", "status": "NOT_FOUND"}})

    def _token(self, form: dict[str, str]) -> Reply:
        problem = self._check_assertion(form)
        if problem:
            return Reply(400, {"error": "invalid_grant", "error_description": problem})
        with self._lock:
            self._tokens += 1
            token = f"ya29.test-{self._tokens}"
            self.valid_tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return "Invalid grant_type"
        try:
            header_b64, claims_b64, signature_b64 = form["assertion"].split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except (KeyError, ValueError):
            return "Invalid JWT"
        if header.get("alg") != "RS256" or header.get("kid") != "key-1":
            return "Invalid JWT header"
        try:
            self.public_key.verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != EMAIL:
            return "Invalid issuer"
        if claims.get("aud") != self.token_uri:
            return "Invalid audience"
        if claims.get("scope") != CLOUD_PLATFORM_SCOPE:
            return "Invalid scope"
        if not (claims["iat"] - 60 <= now < claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    def _fetch(self, name: str) -> Reply:
        with self._lock:
            polls = self._polls[name] = self._polls.get(name, 0) + 1
        if self.on_fetch is not None:
            self.on_fetch(polls)
        if self.never_done or polls <= self.not_done_polls:
            return Reply(200, {"name": name, "done": False})
        if self.done_reply is not None:
            return Reply(200, {"name": name, "done": True, **self.done_reply})
        video = {"bytesBase64Encoded": base64.b64encode(self.video).decode(), "mimeType": "video/mp4"}
        response = {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "videos": [video],
        }
        return Reply(200, {"name": name, "done": True, "response": response})


_SUFFIXES = {"predict": ":predictLongRunning", "fetch": ":fetchPredictOperation", "cancel": ":cancel"}


def _handler(google: FakeGoogle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = google.handle(self.path, raw, self.headers.get("Authorization"))
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class MemoryLedger:
    def __init__(self, job_id: str | None = None, on_remember: Callable[[str], None] | None = None) -> None:
        self.job_id = job_id
        self.on_remember = on_remember

    def recall(self) -> str | None:
        return self.job_id

    def remember(self, job_id: str) -> None:
        if self.on_remember is not None:
            self.on_remember(job_id)
        self.job_id = job_id


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("veo") / "veo.mp4"
    generate_clip(path, prompt="x", duration=1, width=160, height=90, seed=1)
    return path.read_bytes()


@pytest.fixture
def google(key: rsa.RSAPrivateKey, clip: bytes) -> Iterator[FakeGoogle]:
    fake = FakeGoogle(key.public_key(), clip)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _credentials(path: Path, google: FakeGoogle, key: rsa.RSAPrivateKey, **overrides: Any) -> Path:
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "key-1",
        "private_key": _pem(key),
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": google.token_uri,
        **overrides,
    }
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def credentials(tmp_path: Path, google: FakeGoogle, key: rsa.RSAPrivateKey) -> Path:
    return _credentials(tmp_path / "service-account.json", google, key)


def _provider(credentials: Path, google: FakeGoogle, **kwargs: Any) -> VertexVeoProvider:
    kwargs.setdefault("allowed", LOOPBACK)
    kwargs.setdefault("http", FAST)
    return VertexVeoProvider(credentials, base_url=google.url, poll_interval=0.05, **kwargs)


def _request(**overrides: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "prompt": "a lighthouse at dawn",
        "duration": 5,
        "width": 1280,
        "height": 720,
        "aspect_ratio": "16:9",
        "seed": 42,
        "model": None,
    }
    values.update(overrides)
    return GenerationRequest(**values)


# The life cycle


def test_generates_a_clip_through_the_documented_life_cycle(
    credentials: Path, google: FakeGoogle, clip: bytes, tmp_path: Path
) -> None:
    remembered_before_polling: list[bool] = []
    ledger = MemoryLedger(on_remember=lambda _name: remembered_before_polling.append(not google.of("fetch")))
    out = tmp_path / "out" / "clip.mp4"

    _provider(credentials, google).generate(_request(aspect_ratio="9:16", duration=6.4), out, timeout=30, ledger=ledger)

    assert out.read_bytes() == clip
    assert probe(out).duration == pytest.approx(1.0, abs=0.1)
    (predict,) = google.of("predict")
    assert (
        predict.path
        == f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:predictLongRunning"
    )
    assert predict.body == {
        "instances": [{"prompt": "a lighthouse at dawn"}],
        "parameters": {"aspectRatio": "9:16", "durationSeconds": 6, "sampleCount": 1, "seed": 42},
    }
    assert ledger.job_id is not None and ledger.job_id.endswith("/operations/op1")
    assert remembered_before_polling == [True]
    polls = google.of("fetch")
    assert len(polls) == 3  # two not done, then done
    assert {call.body["operationName"] for call in polls} == {ledger.job_id}
    assert polls[0].path.endswith(f"/models/{MODEL}:fetchPredictOperation")
    assert len(google.of("token")) == 1
    assert all(call.authorization == "Bearer ya29.test-1" for call in google.calls if call.kind != "token")
    assert not google.of("cancel")


def test_the_token_is_cached_across_calls(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    provider = _provider(credentials, google)
    for name in ("a.mp4", "b.mp4"):
        provider.generate(_request(), tmp_path / name, timeout=30, ledger=MemoryLedger())
    assert len(google.of("token")) == 1
    assert len(google.of("predict")) == 2


def test_a_refused_token_is_renewed_once(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    provider = _provider(credentials, google)
    google.on_fetch = lambda polls: google.valid_tokens.discard("ya29.test-1") if polls == 1 else None
    provider.generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger())
    assert len(google.of("token")) == 2
    assert google.calls[-1].authorization == "Bearer ya29.test-2"


def test_a_model_param_picks_the_model(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    _provider(credentials, google).generate(
        _request(model="veo-3.0-fast-generate-001"), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger()
    )
    assert google.of("predict")[0].path.endswith("/models/veo-3.0-fast-generate-001:predictLongRunning")


def test_resumes_the_operation_the_ledger_holds(
    credentials: Path, google: FakeGoogle, clip: bytes, tmp_path: Path
) -> None:
    started = google.new_operation()
    out = tmp_path / "out.mp4"
    _provider(credentials, google).generate(_request(), out, timeout=30, ledger=MemoryLedger(started))
    assert out.read_bytes() == clip
    assert not google.of("predict")
    assert {call.body["operationName"] for call in google.of("fetch")} == {started}


# Failures


def test_an_operation_parks_is_polled_by_name_alone_and_its_continuation_collects_it(
    credentials: Path, google: FakeGoogle, clip: bytes, tmp_path: Path
) -> None:
    provider = _provider(credentials, google)
    ledger = MemoryLedger()
    out = tmp_path / "out.mp4"
    with parking_allowed(), pytest.raises(Parked) as parked:
        provider.generate(_request(), out, timeout=30, ledger=ledger)
    name = parked.value.job_id
    assert (parked.value.provider, name) == ("google-cloud", ledger.job_id) and not out.exists()
    assert len(name) <= 256, "an operation name fits provider_waits.job_id"
    assert len(google.of("fetch")) == 1 and not google.of("cancel")
    # The deployment's poller: no webhook from Vertex; the operation is fetched until it is done.
    assert not provider.job_finished(name)
    assert provider.job_finished(name)
    # The continuation recalls the operation (never starts another) and writes its clip.
    with parking_allowed():
        provider.generate(_request(), out, timeout=30, ledger=MemoryLedger(name))
    assert out.read_bytes() == clip
    assert len(google.of("predict")) == 1
    assert {call.body["operationName"] for call in google.of("fetch")} == {name}


def test_a_parked_operation_is_canceled_by_name_and_only_a_vertex_name_is_followed(
    credentials: Path, google: FakeGoogle
) -> None:
    provider = _provider(credentials, google)
    name = google.new_operation()
    assert provider.cancel_job(name)
    [cancel] = google.of("cancel")
    assert cancel.path == f"/v1/{name}:cancel"
    google.scripts["cancel"].append(Reply(404, {"error": {"code": 404, "message": "not found"}}))
    assert not provider.cancel_job(name), "a refused cancel is answered False"
    # The name goes into URLs our bearer token is sent to: anything else is refused before a request.
    for bad in ("op1", f"{name}/../../../other", "projects/p/locations/l/datasets/d/operations/1"):
        with pytest.raises(ProviderError, match="not a Vertex AI operation name"):
            provider.job_finished(bad)
        with pytest.raises(ProviderError, match="not a Vertex AI operation name"):
            provider.cancel_job(bad)
    assert not google.of("fetch") and len(google.of("cancel")) == 2


def test_429_is_retried_after_the_time_retry_after_asks(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    google.scripts["predict"].append(
        Reply(
            429,
            {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            {"Retry-After": "0.3"},
        )
    )
    provider = _provider(credentials, google)
    provider.generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger())
    first, second = google.of("predict")
    # The backoff is 0.01 s: only Retry-After explains the gap.
    assert second.at - first.at >= 0.3


def test_a_5xx_while_polling_is_retried(credentials: Path, google: FakeGoogle, clip: bytes, tmp_path: Path) -> None:
    google.scripts["fetch"].append(
        Reply(500, {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})
    )
    out = tmp_path / "out.mp4"
    _provider(credentials, google).generate(_request(), out, timeout=30, ledger=MemoryLedger())
    assert out.read_bytes() == clip
    assert len(google.of("predict")) == 1


def test_persistent_5xx_gives_up_with_a_transient_error(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    unavailable = Reply(
        503, {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}
    )
    google.scripts["predict"].extend([unavailable] * 5)
    provider = _provider(credentials, google, http=HttpPolicy(max_attempts=3, base_delay=0.01))
    with pytest.raises(TransientProviderError) as caught:
        provider.generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger())
    assert "HTTP 503" in str(caught.value) and "currently unavailable" in str(caught.value)
    assert len(google.of("predict")) == 3


def test_a_transient_failure_while_polling_leaves_the_operation_to_resume(
    credentials: Path, google: FakeGoogle, clip: bytes, tmp_path: Path
) -> None:
    google.scripts["fetch"].extend([Reply(502, {})] * 2)
    provider = _provider(credentials, google, http=HttpPolicy(max_attempts=2, base_delay=0.01))
    ledger = MemoryLedger()
    with pytest.raises(TransientProviderError):
        provider.generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=ledger)
    assert not google.of("cancel")

    out = tmp_path / "retried.mp4"
    provider.generate(_request(), out, timeout=30, ledger=ledger)  # the step's retry
    assert out.read_bytes() == clip
    assert len(google.of("predict")) == 1


def test_a_4xx_is_a_provider_error_with_googles_message(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    google.scripts["predict"].append(
        Reply(
            400,
            {
                "error": {
                    "code": 400,
                    "message": "durationSeconds must be between 5 and 8 seconds",
                    "status": "INVALID_ARGUMENT",
                }
            },
        )
    )
    with pytest.raises(ProviderError) as caught:
        _provider(credentials, google).generate(
            _request(duration=3), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger()
        )
    assert not isinstance(caught.value, TransientProviderError)
    assert "HTTP 400" in str(caught.value)
    assert "durationSeconds must be between 5 and 8 seconds" in str(caught.value)
    assert len(google.of("predict")) == 1


def test_an_operation_error_is_a_provider_error(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    google.done_reply = {
        "error": {"code": 3, "message": "Generated video is large, an output storage uri is required."}
    }
    out = tmp_path / "out.mp4"
    with pytest.raises(
        ProviderError, match=r"failed: Generated video is large, an output storage uri is required\. \(code 3\)"
    ):
        _provider(credentials, google).generate(_request(), out, timeout=30, ledger=MemoryLedger())
    assert not out.exists()
    assert not google.of("cancel")


def test_a_video_removed_by_safety_filters_says_why(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    google.done_reply = {"response": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["Unsafe prompt."]}}
    with pytest.raises(ProviderError, match=r"safety filters .*: Unsafe prompt\."):
        _provider(credentials, google).generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger())


def test_a_video_left_in_cloud_storage_is_refused_clearly(
    credentials: Path, google: FakeGoogle, tmp_path: Path
) -> None:
    google.done_reply = {"response": {"videos": [{"gcsUri": "gs://bucket/out/sample_0.mp4", "mimeType": "video/mp4"}]}}
    with pytest.raises(ProviderError, match="storageUri"):
        _provider(credentials, google).generate(_request(), tmp_path / "out.mp4", timeout=30, ledger=MemoryLedger())


def test_the_timeout_cancels_the_operation(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    google.never_done = True
    ledger = MemoryLedger()
    out = tmp_path / "out.mp4"
    with pytest.raises(ProviderError, match=r"did not finish within the 0\.5s timeout; cancelled it") as caught:
        _provider(credentials, google).generate(_request(), out, timeout=0.5, ledger=ledger)
    assert not isinstance(caught.value, TransientProviderError)
    (cancel,) = google.of("cancel")
    assert cancel.path == f"/v1/{ledger.job_id}:cancel"
    assert cancel.authorization == "Bearer ya29.test-1"
    # No count of polls: on a loaded machine the 0.5 s can pass before the first one (seen in CI with load 18).
    assert not out.exists()


def test_an_interrupt_while_waiting_cancels_the_operation_and_propagates(
    credentials: Path, google: FakeGoogle, tmp_path: Path
) -> None:
    google.never_done = True
    google.on_fetch = lambda polls: _thread.interrupt_main() if polls == 2 else None
    ledger = MemoryLedger()
    # Python's own SIGINT handler: a test run earlier in this xdist worker may have left another one installed
    # (Dagster captures interrupts), and then interrupt_main raised nothing and this waited forever (seen in CI).
    # A timeout, not None: should the interrupt still be lost, the test fails instead of hanging the suite.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _provider(credentials, google).generate(_request(), tmp_path / "out.mp4", timeout=60, ledger=ledger)
    finally:
        signal.signal(signal.SIGINT, previous)
    (cancel,) = google.of("cancel")
    assert cancel.path == f"/v1/{ledger.job_id}:cancel"


# Refused before anything is sent


@pytest.mark.parametrize("ratio", ["1:1", "4:5"])
def test_aspect_ratios_veo_cannot_render_are_refused(
    credentials: Path, google: FakeGoogle, tmp_path: Path, ratio: str
) -> None:
    with pytest.raises(ProviderError, match=rf"only 16:9 and 9:16; aspectRatio '{ratio}'.*reframe"):
        _provider(credentials, google).generate(
            _request(aspect_ratio=ratio), tmp_path / "o.mp4", timeout=30, ledger=MemoryLedger()
        )
    assert not google.calls


def test_a_model_param_cannot_climb_out_of_the_model_path(
    credentials: Path, google: FakeGoogle, tmp_path: Path
) -> None:
    with pytest.raises(ProviderError, match="not a Vertex AI model id"):
        _provider(credentials, google).generate(
            _request(model="../../../v1/projects/other"), tmp_path / "o.mp4", timeout=30, ledger=MemoryLedger()
        )
    assert not google.calls


def test_a_ledger_entry_that_is_not_an_operation_is_refused(
    credentials: Path, google: FakeGoogle, tmp_path: Path
) -> None:
    with pytest.raises(ProviderError, match="not a Vertex AI operation name"):
        _provider(credentials, google).generate(_request(), tmp_path / "o.mp4", timeout=30, ledger=MemoryLedger("../x"))
    assert not google.calls


def test_private_endpoints_need_the_allow_list(credentials: Path, google: FakeGoogle, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="VIDEO_PIPELINES_ALLOWED_HOSTS"):
        _provider(credentials, google, allowed=AllowedHosts()).generate(
            _request(), tmp_path / "o.mp4", timeout=30, ledger=MemoryLedger()
        )
    assert not google.calls


# Credentials


def test_a_refused_assertion_names_googles_reason_and_never_the_key(
    tmp_path: Path, google: FakeGoogle, key: rsa.RSAPrivateKey
) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    credentials = _credentials(tmp_path / "sa.json", google, impostor)
    provider = _provider(credentials, google)
    with pytest.raises(ProviderError) as caught:
        provider.generate(_request(), tmp_path / "o.mp4", timeout=30, ledger=MemoryLedger())
    message = str(caught.value)
    assert "HTTP 400 (invalid_grant: Invalid JWT Signature.)" in message
    (token_call,) = google.of("token")
    secret_key_line = _pem(impostor).splitlines()[1]
    for secret in (secret_key_line, token_call.body["assertion"]):
        assert secret not in message
        assert secret not in repr(provider)
    assert not google.of("predict")


def test_bad_credentials_files_are_named_without_their_content(
    tmp_path: Path, google: FakeGoogle, key: rsa.RSAPrivateKey
) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ProviderError, match=r"cannot read the Google credentials file .*missing\.json"):
        VertexVeoProvider(missing, allowed=LOOPBACK)

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ProviderError, match=r"broken\.json is not valid JSON"):
        VertexVeoProvider(broken, allowed=LOOPBACK)

    user = tmp_path / "user.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "refresh_token": "r"}))
    with pytest.raises(ProviderError, match=r"type 'authorized_user'.*service-account key file"):
        VertexVeoProvider(user, allowed=LOOPBACK)

    garbled = _credentials(
        tmp_path / "garbled.json", google, key, private_key="-----BEGIN PRIVATE KEY-----\nsecretstuff\n"
    )
    with pytest.raises(ProviderError, match="private_key is not a PEM private key") as caught:
        VertexVeoProvider(garbled, allowed=LOOPBACK)
    assert "secretstuff" not in str(caught.value)

    no_project = _credentials(tmp_path / "np.json", google, key, project_id=None)
    with pytest.raises(ProviderError, match="GOOGLE_CLOUD_PROJECT"):
        VertexVeoProvider(no_project, allowed=LOOPBACK)
    assert VertexVeoProvider(no_project, project="explicit", allowed=LOOPBACK).project == "explicit"


def test_from_env_reads_the_google_variables(credentials: Path) -> None:
    with pytest.raises(ProviderError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        VertexVeoProvider.from_env(LOOPBACK, environ={})

    defaults = VertexVeoProvider.from_env(LOOPBACK, environ={"GOOGLE_APPLICATION_CREDENTIALS": str(credentials)})
    assert (defaults.project, defaults.location, defaults.model) == (PROJECT, "us-central1", MODEL)
    assert defaults.base_url == "https://us-central1-aiplatform.googleapis.com"

    configured = VertexVeoProvider.from_env(
        LOOPBACK,
        environ={
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
            "GOOGLE_CLOUD_PROJECT": "other-project",
            "GOOGLE_CLOUD_LOCATION": "europe-west4",
            "GOOGLE_VERTEX_BASE_URL": "https://vertex-gateway.internal/",
        },
    )
    assert (configured.project, configured.location) == ("other-project", "europe-west4")
    assert configured.base_url == "https://vertex-gateway.internal"
    assert configured.name == "google-cloud"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None  # not delay-seconds (RFC 9110): the backoff decides
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later) == pytest.approx(30, abs=2)
