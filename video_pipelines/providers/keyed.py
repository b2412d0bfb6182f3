"""What the Replicate and fal adapters share: an API key header, a base URL, default models (`from_env` at run time)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Self

from video_pipelines.errors import ProviderError
from video_pipelines.net import AllowedHosts
from video_pipelines.providers.base import LipSyncRequest, TranscriptionRequest
from video_pipelines.providers.http import DEFAULT_MAX_INLINE_BYTES, HttpPolicy, ProviderHttp, remote_input
from video_pipelines.providers.whisper import speech_source


class ApiKeyProvider:
    """A provider reached with one API key: its configuration and its HTTP client."""

    name: str
    key_variable: ClassVar[str]  # the environment variable of the key, named in errors
    key_label: ClassVar[str]  # what the provider calls its key
    auth_scheme: ClassVar[str]  # of the Authorization header
    base_url_variable: ClassVar[str]
    default_base_url: ClassVar[str]
    default_video_model: ClassVar[str]
    default_lipsync_model: ClassVar[str]
    default_speech_model: ClassVar[str]
    # Local files up to this size travel inline (a data URI); larger ones go to the provider's file
    # store (its `_upload`), up to `max_upload_bytes` where it publishes a limit.
    default_max_inline_bytes: ClassVar[int] = DEFAULT_MAX_INLINE_BYTES
    max_upload_bytes: int | None = None

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        video_model: str | None = None,
        lipsync_model: str | None = None,
        speech_model: str | None = None,
        allowed: AllowedHosts,
        poll_interval: float = 2.0,
        http: HttpPolicy | None = None,
        max_inline_bytes: int | None = None,
    ) -> None:
        if not api_key:
            raise ProviderError(f"{self.name}: the {self.key_label} is empty (set {self.key_variable})")
        self._key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.video_model = video_model or self.default_video_model
        self.lipsync_model = lipsync_model or self.default_lipsync_model
        self.speech_model = speech_model or self.default_speech_model
        self.allowed = allowed
        self.poll_interval = poll_interval
        self.http = http or HttpPolicy()
        self.max_inline_bytes = self.default_max_inline_bytes if max_inline_bytes is None else max_inline_bytes

    @classmethod
    def from_env(cls, allowed: AllowedHosts, environ: Mapping[str, str] | None = None) -> Self:
        """Configured from the key and base-URL variables; `environ` defaults to `os.environ`."""
        env = os.environ if environ is None else environ
        base_url = env.get(cls.base_url_variable, "").strip() or None
        return cls(env.get(cls.key_variable, "").strip(), base_url=base_url, allowed=allowed)

    def _upload(self, path: Path, content_type: str) -> str:
        """Put a local file on the provider's file store; the URL its models read it from."""
        raise NotImplementedError

    def _lipsync_sources(self, request: LipSyncRequest) -> tuple[str, str]:
        """The video and audio of `request` as this provider's models read them (inline, uploaded or a URL)."""
        limit = self.max_inline_bytes
        source = functools.partial(remote_input, provider=self.name, max_inline_bytes=limit, upload=self._upload)
        video = source(request.video_url, request.video, what="video")
        return video, source(request.audio_url, request.audio, what="audio")

    def _speech_source(self, request: TranscriptionRequest, *, timeout: float | None) -> str:
        limit = self.max_inline_bytes
        return speech_source(request, provider=self.name, max_inline_bytes=limit, timeout=timeout, upload=self._upload)

    def _api(self) -> ProviderHttp:
        return ProviderHttp(
            self.name,
            allowed=self.allowed,
            policy=self.http,
            credential=self.key_variable,
            authorization=f"{self.auth_scheme} {self._key}",
            secret=self._key,
        )
