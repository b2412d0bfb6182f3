"""fal's webhook signatures (`providers.fal_webhooks`, `callbacks.job_news("fal", ...)`) against keys a test makes
and serves as a JWKS from a real HTTP server on 127.0.0.1, fetched through the providers' HTTP stack."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from video_pipelines.providers import callbacks
from video_pipelines.providers.base import CALLING_BACK
from video_pipelines.providers.callbacks import CallbackRefused, UnknownCaller, job_news
from video_pipelines.providers.fal_webhooks import (
    KEYS_TTL_SECONDS,
    MAX_SKEW_SECONDS,
    REFETCH_SECONDS,
    FalKeys,
    FalSignatureError,
    ed25519_keys,
    verify_fal,
)

from ..http_servers import serve_in_background, shut_down

APP = "fal-ai/kling-video"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": _b64url(raw[:6]), "use": "sig"}


@dataclass
class FalSigner:
    """fal's side of its webhooks: Ed25519 keys published as a JWKS on 127.0.0.1, and the calls they sign."""

    keys: list[Ed25519PrivateKey] = field(default_factory=lambda: [Ed25519PrivateKey.generate()])
    fetches: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FalSigner:
        signer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with signer._lock:
                    signer.fetches += 1
                    # An RSA key beside them, as a JWKS may hold: it is skipped, not an error.
                    jwks = {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, *map(public_jwk, signer.keys)]}
                payload = json.dumps(jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = serve_in_background(Handler, poll_interval=0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def rotate(self) -> Ed25519PrivateKey:
        """fal publishes a new key and drops the old ones; the new key."""
        with self._lock:
            self.keys = [Ed25519PrivateKey.generate()]
            return self.keys[0]

    def headers(
        self, body: bytes, request_id: str, *, key: Ed25519PrivateKey | None = None, at: float | None = None
    ) -> dict[str, str]:
        """The headers fal sends with `body`: the request, user and time, signed the documented way."""
        timestamp = str(int(time.time() if at is None else at))
        message = "\n".join((request_id, "user-42", timestamp, hashlib.sha256(body).hexdigest())).encode()
        signature = (key or self.keys[0]).sign(message)
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": "user-42",
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": signature.hex(),
        }


def fal_result(request_id: str, status: str = "OK") -> bytes:
    payload = {"video": {"url": "https://v3.fal.media/files/x/out.mp4"}} if status == "OK" else {"detail": "crashed"}
    return json.dumps(
        {"request_id": request_id, "gateway_request_id": request_id, "status": status, "payload": payload}
    ).encode()


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Iterator[FalSigner]:
    """fal's keys served at `FAL_JWKS_URL`, and this process's fal key cache emptied."""
    fal = FalSigner().start()
    monkeypatch.setenv("FAL_JWKS_URL", fal.url)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setattr(callbacks, "FAL_KEYS", FalKeys())
    try:
        yield fal
    finally:
        fal.stop()


def test_a_signed_fal_webhook_names_the_job_of_the_app_its_url_carries(signer: FalSigner) -> None:
    body = fal_result("req-1")
    news = job_news("fal", body, signer.headers(body, "req-1"), {"app": APP})
    assert (news.provider, news.job_id, news.ended) == ("fal", f"{APP}/req-1", True)
    failed = fal_result("req-2", "ERROR")
    assert job_news("fal", failed, signer.headers(failed, "req-2"), {"app": APP}).ended, "an error ends the job too"
    # A URL that is not ours (no app, or one that is no app id) names no job a node waits on: nothing changes.
    assert job_news("fal", body, signer.headers(body, "req-1")).job_id == "req-1"
    assert job_news("fal", body, signer.headers(body, "req-1"), {"app": "../../x"}).job_id == "req-1"
    assert signer.fetches == 1, "the keys are fetched once and kept"


def test_unsigned_forged_stale_or_mismatched_fal_webhooks_are_refused(signer: FalSigner) -> None:
    body = fal_result("req-1")
    good = signer.headers(body, "req-1")
    other_key = Ed25519PrivateKey.generate()
    refused = {
        "unsigned": {},
        "no signature": {name: value for name, value in good.items() if not name.endswith("Signature")},
        "another key": signer.headers(body, "req-1", key=other_key),
        "not hex": {**good, "X-Fal-Webhook-Signature": "zz" * 64},
        "another body": good,  # checked against the body below
        "stale": signer.headers(body, "req-1", at=time.time() - MAX_SKEW_SECONDS - 30),
        "from the future": signer.headers(body, "req-1", at=time.time() + MAX_SKEW_SECONDS + 30),
        "another user": {**good, "X-Fal-Webhook-User-Id": "user-43"},
        "another request": {**good, "X-Fal-Webhook-Request-Id": "req-9"},
    }
    for what, headers in refused.items():
        sent = fal_result("req-1") + (b" " if what == "another body" else b"")
        with pytest.raises(CallbackRefused, match="fal webhook refused"):
            job_news("fal", sent, headers, {"app": APP})
            pytest.fail(f"{what}: taken")
    # Signed, but its body speaks of another request than the signed headers: refused too.
    swapped = fal_result("req-2")
    with pytest.raises(CallbackRefused, match="not the result of the request"):
        job_news("fal", swapped, signer.headers(swapped, "req-1"), {"app": APP})
    assert job_news("fal", body, good, {"app": APP}).job_id == f"{APP}/req-1"


def test_a_signature_no_cached_key_verifies_fetches_the_keys_again_once(signer: FalSigner) -> None:
    clock = [1000.0]
    keys = FalKeys(clock=lambda: clock[0])
    body = fal_result("req-1")
    verify_fal(body, lower(signer.headers(body, "req-1")), keys, url=signer.url)
    rotated = signer.rotate()
    signed_by_new = lower(signer.headers(body, "req-1", key=rotated))
    # Right after a fetch, an unknown signature does not fetch again (forged calls cannot drive fetches) ...
    with pytest.raises(FalSignatureError, match="not made by any of fal's published keys"):
        verify_fal(body, signed_by_new, keys, url=signer.url)
    assert signer.fetches == 1
    # ... later it does, once, and the new key is kept.
    clock[0] += REFETCH_SECONDS + 1
    assert verify_fal(body, signed_by_new, keys, url=signer.url) == "req-1"
    assert verify_fal(body, signed_by_new, keys, url=signer.url) == "req-1"
    assert signer.fetches == 2
    forged = lower(signer.headers(body, "req-1", key=Ed25519PrivateKey.generate()))
    clock[0] += REFETCH_SECONDS + 1
    with pytest.raises(FalSignatureError):
        verify_fal(body, forged, keys, url=signer.url)
    assert signer.fetches == 3, "a forged signature costs one fetch per refetch interval at most"
    clock[0] += KEYS_TTL_SECONDS
    verify_fal(body, signed_by_new, keys, url=signer.url)
    assert signer.fetches == 4, "the keys are fetched again after a day"


def test_keys_that_cannot_be_fetched_refuse_the_call_and_are_fetched_through_the_host_guard(
    signer: FalSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = fal_result("req-1")
    monkeypatch.delenv("VIDEO_PIPELINES_ALLOWED_HOSTS")  # 127.0.0.1 is private: the SSRF guard refuses it
    with pytest.raises(CallbackRefused, match="keys could not be fetched"):
        job_news("fal", body, signer.headers(body, "req-1"), {"app": APP})
    assert signer.fetches == 0


def test_only_ed25519_keys_of_a_jwks_are_taken() -> None:
    key = Ed25519PrivateKey.generate()
    jwks = {
        "keys": [
            {"kty": "RSA", "n": "x"},
            {"kty": "OKP", "crv": "X25519", "x": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "short"},
            public_jwk(key),
        ]
    }
    [taken] = ed25519_keys(jwks)
    assert taken.public_bytes_raw() == key.public_key().public_bytes_raw()
    assert ed25519_keys({}) == []


def test_the_providers_that_call_back_are_those_with_a_verifier() -> None:
    assert set(callbacks._VERIFIERS) == set(CALLING_BACK)
    with pytest.raises(UnknownCaller, match="providers that call back: replicate, fal"):
        job_news("google-cloud", b"{}", {})


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
