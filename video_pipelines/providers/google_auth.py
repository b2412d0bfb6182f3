"""Google service-account access tokens (JWT bearer grant, RFC 7523), cached until near expiry.

Not google-auth: it calls iamcredentials.googleapis.com in the background (past our SSRF guard),
brings requests/urllib3, is untyped and sleeps through its own retries. Secrets never reach errors.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from video_pipelines.errors import ProviderError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google refuses assertions that live longer than an hour.
ASSERTION_LIFETIME = 3600
# A cached token is renewed this long before it expires, so a request never carries a token
# that expires on the way.
REFRESH_MARGIN = 300.0

TokenExchange = Callable[[str, Mapping[str, str]], Mapping[str, Any]]
"""POSTs a form to a token endpoint URL and returns its JSON answer (the caller's HTTP stack)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


@dataclass(frozen=True)
class ServiceAccountKey:
    """The parts of a service-account key file the JWT bearer grant needs."""

    client_email: str
    token_uri: str
    project_id: str | None
    private_key_id: str | None
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> ServiceAccountKey:
        """Read and check a service-account JSON key file; ProviderError says what is wrong with it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProviderError(f"cannot read the Google credentials file {path}: {exc.strerror or exc}") from None
        try:
            info = json.loads(text)
        except ValueError:
            raise ProviderError(f"the Google credentials file {path} is not valid JSON") from None
        if not isinstance(info, dict):
            raise ProviderError(f"the Google credentials file {path} is not a JSON object")
        source = str(path)
        kind = info.get("type")
        if kind is not None and kind != "service_account":
            raise ProviderError(
                f"{source} holds credentials of type {kind!r}; the google-cloud provider needs a "
                "service-account key file (type 'service_account', created in IAM > Service accounts > Keys)"
            )
        missing = [name for name in ("client_email", "private_key", "token_uri") if not isinstance(info.get(name), str)]
        if missing:
            raise ProviderError(f"{source} is not a service-account key file: missing {', '.join(missing)}")
        token_uri = str(info["token_uri"])
        if not token_uri.startswith(("https://", "http://")):
            raise ProviderError(f"{source}: token_uri must be an http(s) URL")
        try:
            private_key = serialization.load_pem_private_key(str(info["private_key"]).encode("utf-8"), password=None)
        except (ValueError, TypeError):
            # The parser's message may quote the key material: keep it out.
            raise ProviderError(f"{source}: private_key is not a PEM private key without a password") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ProviderError(f"{source}: private_key must be an RSA key (Google service-account keys are)")
        project_id = info.get("project_id")
        key_id = info.get("private_key_id")
        return cls(
            client_email=str(info["client_email"]),
            token_uri=token_uri,
            project_id=project_id if isinstance(project_id, str) and project_id else None,
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
            private_key=private_key,
        )

    def assertion(self, scope: str, *, now: float | None = None) -> str:
        """A signed JWT (RS256) asking `token_uri` for a token with `scope`, valid for an hour."""
        issued = int(time.time() if now is None else now)
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        claims = {
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        signing_input = f"{_b64url(_compact_json(header))}.{_b64url(_compact_json(claims))}"
        signature = self.private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


class AccessTokens:
    """Access tokens for one service account and scope; thread-safe, one thread mints while the others wait."""

    def __init__(
        self, key: ServiceAccountKey, scope: str = CLOUD_PLATFORM_SCOPE, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.key = key
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __repr__(self) -> str:
        return f"AccessTokens(client_email={self.key.client_email!r}, scope={self.scope!r})"

    def get(self, exchange: TokenExchange) -> str:
        """The cached token, or a new one minted through `exchange` when there is none or it is about to expire."""
        with self._lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.key.assertion(self.scope)}
            started = self._clock()
            answer = exchange(self.key.token_uri, form)
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                raise ProviderError("the Google token endpoint answered without an access_token")
            token_type = answer.get("token_type", "Bearer")
            if not isinstance(token_type, str) or token_type.lower() != "bearer":
                raise ProviderError(
                    f"the Google token endpoint answered a token of type {token_type!r}, expected Bearer"
                )
            try:
                lifetime = max(float(answer.get("expires_in", ASSERTION_LIFETIME)), 0.0)
            except (TypeError, ValueError):
                raise ProviderError("the Google token endpoint answered a non-numeric expires_in") from None
            self._token = token
            self._renew_at = started + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            return token

    def invalidate(self) -> None:
        """Forget the cached token (the API refused it), so the next `get` mints another."""
        with self._lock:
            self._token = None
            self._renew_at = 0.0
