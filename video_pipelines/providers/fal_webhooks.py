"""fal's webhook signatures: ED25519 over `request_id \\n user_id \\n timestamp \\n hex(sha256(body))`, from the
`X-Fal-Webhook-*` headers, with one of the keys fal publishes as a JWKS (`FAL_JWKS_URL`; tests serve their own).

fal's headers name no key, so every published key is tried. The keys are cached for a day (fal allows up to 24 h)
and fetched again once when none verifies a signature (fal rotated them), at most every `REFETCH_SECONDS`, so forged
calls cannot make us fetch on every request. A JWK of Ed25519 (RFC 8037: kty OKP, crv Ed25519, x the 32-byte key
in base64url) is one decode for `cryptography`; no JOSE library is needed for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from video_pipelines.errors import VideoPipelineError
from video_pipelines.net import AllowedHosts
from video_pipelines.providers.http import HttpPolicy, ProviderHttp

JWKS_URL_ENV = "FAL_JWKS_URL"
DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
MAX_SKEW_SECONDS = 300  # fal's docs: refuse timestamps more than five minutes off
KEYS_TTL_SECONDS = 24 * 3600.0
REFETCH_SECONDS = 30.0
# A webhook waits on this fetch: two quick tries, and a key set is a few hundred bytes.
_JWKS_HTTP = HttpPolicy(max_attempts=2, base_delay=0.5, max_delay=1.0, request_timeout=10.0, max_response_bytes=65536)

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"


class FalSignatureError(Exception):
    """The call is not signed by fal (or its keys could not be had); the message says why, never the signature."""


def jwks_url() -> str:
    return os.environ.get(JWKS_URL_ENV, "").strip() or DEFAULT_JWKS_URL


def _fetch_jwks(url: str) -> Mapping[str, Any]:
    http = ProviderHttp("fal", allowed=AllowedHosts.from_env(), policy=_JWKS_HTTP, credential=JWKS_URL_ENV)
    return http.call("GET", url, what="fetching fal's webhook keys")


def ed25519_keys(jwks: Mapping[str, Any]) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS (others are skipped: fal signs with Ed25519 only)."""
    keys = []
    for jwk in jwks.get("keys") or []:
        if not isinstance(jwk, dict) or (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
            continue
        x = jwk.get("x")
        try:
            raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return keys


@dataclass
class _Fetched:
    url: str
    keys: list[Ed25519PublicKey]
    at: float


class FalKeys:
    """fal's public keys, fetched from the JWKS URL when first needed, kept a day, fetched again on rotation."""

    def __init__(
        self,
        fetch: Callable[[str], Mapping[str, Any]] = _fetch_jwks,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._held: _Fetched | None = None

    def verify(self, message: bytes, signature: bytes, url: str) -> None:
        """FalSignatureError unless one of the keys published at `url` signed `message`."""
        if any(_signed(key, message, signature) for key in self._keys(url, again=False)):
            return
        if any(_signed(key, message, signature) for key in self._keys(url, again=True)):
            return
        raise FalSignatureError("the signature is not made by any of fal's published keys")

    def _keys(self, url: str, *, again: bool) -> list[Ed25519PublicKey]:
        with self._lock:
            held, now = self._held, self._clock()
            if held is not None and held.url == url:
                age = now - held.at
                if age < KEYS_TTL_SECONDS and (not again or age < REFETCH_SECONDS):
                    return [] if again else held.keys
            try:
                jwks = self._fetch(url)
            except VideoPipelineError as exc:
                raise FalSignatureError(f"fal's webhook keys could not be fetched ({JWKS_URL_ENV}): {exc}") from None
            self._held = _Fetched(url, ed25519_keys(jwks), now)
            return self._held.keys


def _signed(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_fal(
    body: bytes, headers: Mapping[str, str], keys: FalKeys, *, url: str | None = None, now: float | None = None
) -> str:
    """The request id of a call fal signed (`headers` lower-cased); FalSignatureError otherwise."""
    values = [headers.get(name, "").strip() for name in (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE)]
    request_id, user_id, timestamp, signature = values
    missing = [
        name for name, value in zip((REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE), values, strict=True) if not value
    ]
    if missing:
        raise FalSignatureError(f"missing {', '.join(missing)}")
    try:
        sent = int(timestamp)
    except ValueError:
        raise FalSignatureError(f"{TIMESTAMP} is not a Unix time") from None
    if abs((time.time() if now is None else now) - sent) > MAX_SKEW_SECONDS:
        raise FalSignatureError(f"{TIMESTAMP} is more than {MAX_SKEW_SECONDS} s off (a replay, or a clock off)")
    try:
        signed = bytes.fromhex(signature)
    except ValueError:
        raise FalSignatureError(f"{SIGNATURE} is not hex") from None
    message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()
    keys.verify(message, signed, url or jwks_url())
    return request_id
