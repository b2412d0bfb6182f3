"""What the Replicate and fal adapters share: an API key header, a base URL, default models (`from_env` at run time),
and the three operations, each one job of the provider's (`_job`) whose output its own readers take apart."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from video_pipelines.errors import ProviderError
from video_pipelines.net import AllowedHosts, fetch_to_file
from video_pipelines.providers.base import GenerationRequest, JobLedger, LipSyncRequest, TranscriptionRequest
from video_pipelines.providers.http import DEFAULT_MAX_INLINE_BYTES, HttpPolicy, ProviderHttp, remote_input
from video_pipelines.providers.whisper import speech_source, words_from_output
from video_pipelines.speech import Word


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
    duration_as_text: ClassVar[bool]  # how its video models take `duration`: "5" or 5
    # model (without version) -> (video input name, audio input name); others take the default names.
    lipsync_input_names: ClassVar[Mapping[str, tuple[str, str]]] = {}
    default_lipsync_input_names: ClassVar[tuple[str, str]]
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

    def generate(self, request: GenerationRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.video_model
        inputs = request.common_inputs(duration_as_text=self.duration_as_text)
        self._fetch_video(model, lambda: inputs, out, timeout=timeout, ledger=ledger)

    def lip_sync(self, request: LipSyncRequest, out: Path, *, timeout: float | None, ledger: JobLedger) -> None:
        model = request.model or self.lipsync_model
        video_name, audio_name = self.lipsync_input_names.get(model.partition(":")[0], self.default_lipsync_input_names)

        def inputs() -> dict[str, Any]:  # only for a new job: a resumed one uploads nothing again
            limit = self.max_inline_bytes
            source = functools.partial(remote_input, provider=self.name, max_inline_bytes=limit, upload=self._upload)
            video = source(request.video_url, request.video, what="video")
            return {video_name: video, audio_name: source(request.audio_url, request.audio, what="audio")}

        self._fetch_video(model, inputs, out, timeout=timeout, ledger=ledger)

    def transcribe(self, request: TranscriptionRequest, *, timeout: float | None, ledger: JobLedger) -> list[Word]:
        model = request.model or self.speech_model

        def inputs() -> dict[str, Any]:
            limit = self.max_inline_bytes
            audio = speech_source(
                request, provider=self.name, max_inline_bytes=limit, timeout=timeout, upload=self._upload
            )
            return self._transcription_input(model, audio, request.language)

        where, output = self._job(model, inputs, timeout=timeout, ledger=ledger)
        return self._words(output, where)

    def _fetch_video(
        self, model: str, inputs: Callable[[], dict[str, Any]], out: Path, *, timeout: float | None, ledger: JobLedger
    ) -> None:
        where, output = self._job(model, inputs, timeout=timeout, ledger=ledger)
        fetch_to_file(self._video_url(output, where), out, allowed=self.allowed)

    def _job(
        self, model: str, inputs: Callable[[], dict[str, Any]], *, timeout: float | None, ledger: JobLedger
    ) -> tuple[str, Any]:
        """One job of `model` under `ledger` (`inputs` only for a new one): who answered (for errors), its output."""
        raise NotImplementedError

    def _video_url(self, output: Any, where: str) -> str:
        """The URL of the video in a job's output."""
        raise NotImplementedError

    def _transcription_input(self, model: str, audio: str, language: str) -> dict[str, Any]:
        """The speech-to-text inputs of `model` for `audio` (a URL or data URI) in `language` (ISO 639-1)."""
        raise NotImplementedError

    def _words(self, output: Any, where: str) -> list[Word]:
        return words_from_output(output, where=where)

    def _upload(self, path: Path, content_type: str) -> str:
        """Put a local file on the provider's file store; the URL its models read it from."""
        raise NotImplementedError

    def _api(self) -> ProviderHttp:
        return ProviderHttp(
            self.name,
            allowed=self.allowed,
            policy=self.http,
            credential=self.key_variable,
            authorization=f"{self.auth_scheme} {self._key}",
            secret=self._key,
        )
