"""Google Vertex AI video generation (Veo) behind the `VideoGenerator` protocol.

No `storageUri` is sent, so the clip comes back inline; a `gcsUri` answer is refused (it needs a bucket
and permissions not configured here). The node's `timeout` bounds the whole call (token, start, polls).
Vertex calls nobody back: a node parked on an operation is found done by the deployment's poller (`job_finished`).

Access tokens are the service account's (JWT bearer grant, RFC 7523), cached until near expiry. Not google-auth:
it calls iamcredentials.googleapis.com in the background (past our SSRF guard), brings requests/urllib3, is
untyped and sleeps through its own retries. Secrets never reach errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from video_pipelines.errors import JobFailed, ProviderError
from video_pipelines.net import AllowedHosts, atomic_file, redact_url
from video_pipelines.providers.base import GenerationRequest, JobLedger
from video_pipelines.providers.http import HttpPolicy, ProviderHttp, run_job
from video_pipelines.providers.models import DEFAULT_MODELS

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


CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
LOCATION_ENV = "GOOGLE_CLOUD_LOCATION"
BASE_URL_ENV = "GOOGLE_VERTEX_BASE_URL"

DEFAULT_MODEL = DEFAULT_MODELS[("generateVideo", "google-cloud")]
DEFAULT_LOCATION = "us-central1"
SUPPORTED_ASPECT_RATIOS = ("16:9", "9:16")
# Longer than the default: a done operation carries the clip inline, base64 (tens of MB).
DEFAULT_HTTP = HttpPolicy(request_timeout=60.0, cancel_timeout=10.0)

# Path segments taken from configuration or a plan's `model` param: nothing that could climb
# to another endpoint with our bearer token.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_OPERATION = re.compile(
    r"projects/[A-Za-z0-9._:-]+/locations/[A-Za-z0-9._-]+/publishers/google/models/[A-Za-z0-9._-]+"
    r"/operations/[A-Za-z0-9_-]+"
)
_MESSAGE_LIMIT = 500


class VertexVeoProvider:
    """Generates clips with Veo on Vertex AI, authenticated as a service account."""

    name = "google-cloud"

    def __init__(
        self,
        credentials_file: Path,
        *,
        project: str | None = None,
        location: str = DEFAULT_LOCATION,
        base_url: str | None = None,
        model: str = DEFAULT_MODEL,
        allowed: AllowedHosts,
        poll_interval: float = 5.0,
        http: HttpPolicy | None = None,
    ) -> None:
        key = ServiceAccountKey.load(Path(credentials_file))
        project = project or key.project_id
        if not project:
            raise ProviderError(
                f"provider 'google-cloud' has no project: {credentials_file} has no project_id; set {PROJECT_ENV}"
            )
        for what, value in (("project", project), ("location", location), ("model", model)):
            if not _SEGMENT.fullmatch(value):
                raise ProviderError(f"provider 'google-cloud': {what} {value!r} is not a valid Vertex AI {what} name")
        if base_url is None:
            host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
            base_url = f"https://{host}"
        if not base_url.startswith(("https://", "http://")):
            raise ProviderError(f"provider 'google-cloud': base URL {redact_url(base_url)} is not an http(s) URL")
        if poll_interval <= 0:
            raise ProviderError("provider 'google-cloud': poll_interval must be positive")
        self.project = project
        self.location = location
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.allowed = allowed
        self.poll_interval = poll_interval
        self.http = http or DEFAULT_HTTP
        self._tokens = AccessTokens(key, CLOUD_PLATFORM_SCOPE)

    def __repr__(self) -> str:
        return (
            f"VertexVeoProvider(project={self.project!r}, location={self.location!r}, "
            f"model={self.model!r}, base_url={redact_url(self.base_url)!r})"
        )

    @classmethod
    def from_env(cls, allowed: AllowedHosts, environ: Mapping[str, str] | None = None) -> VertexVeoProvider:
        """Configure from the environment (see the module docstring); `environ` defaults to `os.environ`."""
        env = os.environ if environ is None else environ
        credentials, project, location, base_url = (
            env.get(name, "").strip() or None for name in (CREDENTIALS_ENV, PROJECT_ENV, LOCATION_ENV, BASE_URL_ENV)
        )
        if credentials is None:
            raise ProviderError(
                f"provider 'google-cloud' is not configured: set {CREDENTIALS_ENV} to the path of a "
                "service-account JSON key file"
            )
        location = location or DEFAULT_LOCATION
        return cls(Path(credentials), project=project, location=location, base_url=base_url, allowed=allowed)

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.model
        if not _SEGMENT.fullmatch(model):
            raise ProviderError(f"google-cloud: model {model!r} is not a Vertex AI model id (e.g. {DEFAULT_MODEL})")
        if request.aspect_ratio not in SUPPORTED_ASPECT_RATIOS:
            raise ProviderError(
                f"google-cloud (Veo) renders only {' and '.join(SUPPORTED_ASPECT_RATIOS)}; aspectRatio "
                f"{request.aspect_ratio!r} is not supported: generate 16:9 or 9:16 and add a reframe node "
                f"to {request.aspect_ratio}"
            )
        parameters = {
            "aspectRatio": request.aspect_ratio,
            "durationSeconds": max(1, round(request.duration)),
            "sampleCount": 1,
            "seed": request.seed,
        }
        resumed = ledger.recall()
        if resumed is not None:
            # It becomes part of the URLs our bearer token goes to: refuse anything else before a request.
            self._check_operation_name(resumed, "the ledger holds")
        deadline = None if timeout is None else time.monotonic() + timeout
        api = self._api(deadline)
        video = run_job(
            ledger,
            create=lambda: self._start(api, model, request.prompt, parameters),
            check=lambda name: self._poll(api, name),
            cancel=lambda name: self._cancel(api, name),
            provider=self.name,
            timeout=timeout,
            poll_interval=self.poll_interval,
            deadline=deadline,
            timed_out=lambda name: (
                f"google-cloud operation {name} did not finish within the {timeout:g}s timeout; cancelled it"
            ),
            parkable=True,
        )
        if not video:
            raise ProviderError("google-cloud returned an empty video")
        try:
            with atomic_file(out) as file:
                file.write(video)
        except OSError as exc:
            raise ProviderError(f"cannot write the generated video to {out}: {exc}") from exc

    @staticmethod
    def _check_operation_name(name: str, source: str) -> None:
        if not _OPERATION.fullmatch(name):
            raise ProviderError(
                f"google-cloud: {source} {name[:200]!r}, which is not a Vertex AI operation name "
                "(projects/.../locations/.../publishers/google/models/.../operations/...)"
            )

    def _api(self, deadline: float | None) -> ProviderHttp:
        """The Vertex API as this service account, and its token endpoint, both bounded by `deadline`."""
        token_endpoint = ProviderHttp(
            self.name, allowed=self.allowed, policy=self.http, credential=CREDENTIALS_ENV, deadline=deadline
        )

        def exchange(url: str, form: Mapping[str, str]) -> Mapping[str, Any]:
            return token_endpoint.call("POST", url, form=form, what=f"minting an access token at {redact_url(url)}")

        return ProviderHttp(
            self.name,
            allowed=self.allowed,
            policy=self.http,
            credential=CREDENTIALS_ENV,
            authorization=lambda: f"Bearer {self._tokens.get(exchange)}",
            renew=self._tokens.invalidate,
            deadline=deadline,
        )

    def _start(self, api: ProviderHttp, model: str, prompt: str, parameters: dict[str, Any]) -> str:
        model_path = f"projects/{self.project}/locations/{self.location}/publishers/google/models/{model}"
        answer = api.call(
            "POST",
            f"{self.base_url}/v1/{model_path}:predictLongRunning",
            json={"instances": [{"prompt": prompt}], "parameters": parameters},
            what=f"starting a {model} generation",
        )
        name = answer.get("name")
        if not isinstance(name, str):
            raise ProviderError("google-cloud: predictLongRunning answered without an operation name")
        self._check_operation_name(name, "predictLongRunning answered")
        return name

    def _poll(self, api: ProviderHttp, name: str) -> bytes | None:
        operation = self._operation(api, name)
        return _video_of(operation, name) if operation.get("done") is True else None

    def _operation(self, api: ProviderHttp, name: str) -> dict[str, Any]:
        # The operation name carries its project, location and model: poll where it was started,
        # even if a resumed step runs with other settings.
        url = f"{self.base_url}/v1/{name.rsplit('/operations/', 1)[0]}:fetchPredictOperation"
        return api.call("POST", url, json={"operationName": name}, what=f"polling {name}")

    def _cancel(self, api: ProviderHttp, name: str) -> bool:
        # Vertex's long-running operations take `:cancel` (google.longrunning); Veo's docs do not say whether it
        # stops a generation, so it is a best effort, and a refusal is answered False.
        return api.cancel_quietly("POST", f"{self.base_url}/v1/{name}:cancel", json={})

    def job_finished(self, job_id: str) -> bool:
        """Whether the operation is done (a video, an error or a safety filter: its continuation reads which).
        A done operation carries the clip inline, so it is fetched twice: here and by the continuation."""
        self._check_operation_name(job_id, "a parked node waits on")
        return self._operation(self._api(None), job_id).get("done") is True

    def cancel_job(self, job_id: str) -> bool:
        self._check_operation_name(job_id, "a parked node waits on")
        return self._cancel(self._api(None), job_id)


def _video_of(operation: Mapping[str, Any], name: str) -> bytes:
    """The MP4 a done operation holds; JobFailed says why there is none."""
    error = operation.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        raise JobFailed(
            f"google-cloud operation {name} failed: {str(message or error)[:_MESSAGE_LIMIT]}"
            + (f" (code {code})" if code is not None else "")
        )
    response = operation.get("response")
    if not isinstance(response, dict):
        raise JobFailed(f"google-cloud operation {name} finished without a response")
    # Vertex answers {"videos": [...]}; the PredictLongRunningResponse reference wraps the same
    # in generateVideoResponse/generatedSamples[].video. Both are read.
    body = response.get("generateVideoResponse", response)
    if not isinstance(body, dict):
        body = {}
    samples = body.get("generatedSamples") or []
    videos = body.get("videos") or [sample.get("video") for sample in samples if isinstance(sample, dict)]
    video = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], dict) else None
    if video is None:
        if body.get("raiMediaFilteredCount"):
            reasons = body.get("raiMediaFilteredReasons") or []
            detail = "; ".join(str(r) for r in reasons)[:_MESSAGE_LIMIT] if isinstance(reasons, list) else ""
            raise JobFailed(
                f"google-cloud: Veo's safety filters removed the video of operation {name}"
                + (f": {detail}" if detail else "")
                + "; change the prompt"
            )
        raise JobFailed(f"google-cloud operation {name} finished without a video")
    encoded = video.get("bytesBase64Encoded")
    if isinstance(encoded, str) and encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise JobFailed(f"google-cloud operation {name}: bytesBase64Encoded is not valid base64") from None
    uri = video.get("gcsUri") or video.get("uri")
    if isinstance(uri, str) and uri:
        raise JobFailed(
            f"google-cloud operation {name} left the video in Cloud Storage ({redact_url(uri)}) instead of "
            "returning it inline; this provider sends no storageUri and does not read buckets, so use a "
            "shorter or lower-resolution clip or another provider"
        )
    raise JobFailed(f"google-cloud operation {name}: the video has neither bytesBase64Encoded nor gcsUri")
