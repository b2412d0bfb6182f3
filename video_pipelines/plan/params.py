"""Typed parameters of each plan operation; unknown names are refused (a typo like `promt` would pass silently)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from video_pipelines.errors import MediaError
from video_pipelines.speech import LOCAL_LANGUAGES, REMOTE_TRANSCRIBERS, base_language
from video_pipelines.speech.srt import parse_srt
from video_pipelines.vocabulary import AspectRatioName


class Operation(StrEnum):
    """The video operations a plan node can run, in their camelCase wire names."""

    GENERATE_VIDEO = "generateVideo"
    MERGE = "merge"
    LIP_SYNC = "lipSync"
    ADD_SUBTITLES = "addSubtitles"
    REFRAME = "reframe"

    @property
    def snake_name(self) -> str:
        """`generate_video` for `generateVideo`: the spelling of Dagster asset keys and tables."""
        return re.sub(r"(?=[A-Z])", "_", self.value).lower()

    @classmethod
    def parse(cls, name: str) -> Operation | None:
        """The operation for a camelCase or snake_case spelling, or None if there is none."""
        return _BY_SPELLING.get(name)


# The seed SDK's JSON payload examples say "generate" for generateVideo.
_BY_SPELLING: dict[str, Operation] = (
    {op.value: op for op in Operation}
    | {op.snake_name: op for op in Operation}
    | {"generate": Operation.GENERATE_VIDEO}
)


_T = TypeVar("_T")
_F = TypeVar("_F", bound=Sequence["VideoFallback | SyncFallback"] | None)

# JSON's own types only, as the OpenAPI schema says: pydantic's lax mode would also take "5" or true
# for a number and 1 for true.
Number = Annotated[float, Strict()]
WholeNumber = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]


class _Params(BaseModel):
    # Each built at its first use: a plan validates only the params of the operations it has.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_floats(cls, value: object) -> object:
        # 720.0 from an encoder that writes every number as a float is the whole number 720 (JSON Schema agrees).
        return int(value) if isinstance(value, float) and value.is_integer() else value


VideoProvider = Literal["local", "replicate", "fal", "google-cloud"]
# Who lip-syncs, and who transcribes speech for captions: no Vertex model does either here.
SyncProvider = Literal["local", "replicate", "fal"]
MAX_FALLBACKS = 5


class _Fallback(_Params):
    model: str | None = Field(default=None, min_length=1)


class VideoFallback(_Fallback):
    """Another provider (and model) to generate with when the ones before it refused, kept failing or are out."""

    provider: VideoProvider


class SyncFallback(_Fallback):
    """Another provider (and model) to lip-sync or transcribe with when the ones before it could not."""

    provider: SyncProvider


def _fallbacks_field() -> Any:
    return Field(default=None, min_length=1, max_length=MAX_FALLBACKS)


def _checked_fallbacks(model: type[_Params], fallbacks: _F, info: ValidationInfo) -> _F:
    """Each fallback as the node's own provider and model: what the params' other checks say of it (a language
    the local recogniser does not know, say), named by its place in the list."""
    if fallbacks is None:
        return fallbacks
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    if not required <= set(info.data):  # a field failed already: its own error says what to fix
        return fallbacks
    for index, fallback in enumerate(fallbacks):
        values = {**info.data, "provider": fallback.provider, "model": fallback.model}
        try:
            model.model_validate(values)
        except ValidationError as exc:
            reasons = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
            raise ValueError(f"entry {index} (provider {fallback.provider}): {reasons}") from None
    return fallbacks


class GenerateVideoParams(_Params):
    """generateVideo: a clip of `duration` seconds from a prompt."""

    # The schema says what `_prompt_not_blank` checks, for clients generated from it.
    prompt: str = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": r"\S"})
    duration: Number = Field(default=5, ge=1, le=60)
    aspect_ratio: AspectRatioName = Field(default="16:9", alias="aspectRatio")
    provider: VideoProvider = "local"
    model: str | None = None
    seed: WholeNumber | None = Field(default=None, ge=0, le=2**31 - 1)
    # The short side in pixels (720 = 720p); not in the seed SDK, useful for drafts and tests.
    resolution: WholeNumber = Field(default=720, ge=64, le=2160)
    fallbacks: list[VideoFallback] | None = _fallbacks_field()

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[VideoFallback] | None, info: ValidationInfo) -> list[VideoFallback] | None:
        return _checked_fallbacks(cls, value, info)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class MergeParams(_Params):
    """merge: the input videos one after the other, joined by `transition`."""

    transition: Literal["cut", "crossfade", "fade"] = "cut"
    transition_duration: Number = Field(default=0.5, gt=0, le=10, alias="transitionDuration")


class LipSyncParams(_Params):
    """lipSync: the input video speaking the audio at `audioUrl`."""

    audio_url: str = Field(min_length=1, alias="audioUrl", json_schema_extra={"pattern": "^https?://"})
    provider: SyncProvider = "local"
    model: str | None = None
    fallbacks: list[SyncFallback] | None = _fallbacks_field()

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[SyncFallback] | None, info: ValidationInfo) -> list[SyncFallback] | None:
        return _checked_fallbacks(cls, value, info)

    @field_validator("audio_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value


class SubtitleCue(_Params):
    """One subtitle, shown from `start` to `end` seconds (end after start)."""

    start: Number = Field(ge=0)
    end: Number = Field(gt=0)
    text: str

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"cue ends ({self.end}) before it starts ({self.start})")
        return self


class SubtitleStyle(_Params):
    """How burnt-in subtitles look."""

    font_size: WholeNumber | None = Field(default=None, ge=6, le=300, alias="fontSize")
    position: Literal["bottom", "top", "center"] = "bottom"
    # "word": karaoke, each word highlighted as it is spoken (speech's own timings, else spread over the cue).
    highlight: Literal["none", "word"] = "none"


_SOURCES = ("text", "cues", "srt")


class AddSubtitlesParams(_Params):
    """addSubtitles: `text`, `cues` or `srt`; or none and `language` (with `provider`, `model`): captions of speech."""

    # Field order matters to the validators: each sees the fields declared before it.

    text: str | None = Field(default=None, min_length=1)
    cues: list[SubtitleCue] | None = Field(default=None, min_length=1)
    srt: str | None = Field(default=None, min_length=1)
    # Who transcribes the speech: the offline recogniser, or a provider's speech-to-text.
    provider: SyncProvider = "local"
    model: str | None = Field(default=None, min_length=1)
    language: str | None = Field(default=None, max_length=35)
    # False: the picture is left alone; the cues become a soft subtitle track and the sidecars.
    burn: Flag = True
    style: SubtitleStyle = SubtitleStyle()
    fallbacks: list[SyncFallback] | None = _fallbacks_field()

    @property
    def from_speech(self) -> bool:
        """Whether the cues come from transcribing the video's speech (no text, cues or srt given)."""
        return self.text is None and self.cues is None and self.srt is None

    @field_validator("srt")
    @classmethod
    def _parseable_srt(cls, value: str | None) -> str | None:
        if value is not None and "{{" not in value:
            try:
                if not parse_srt(value):
                    raise ValueError("holds no cues")
            except MediaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("provider", "model", "fallbacks")
    @classmethod
    def _only_for_speech(cls, value: _T, info: ValidationInfo) -> _T:
        given = [name for name in _SOURCES if info.data.get(name) is not None]
        if value is not None and given:
            raise ValueError(
                f"'{info.field_name}' is for captions from speech (who transcribes it); it does not go with "
                f"'{given[0]}' (drop '{info.field_name}', or give only 'language' to caption the speech)"
            )
        return value

    @field_validator("language")
    @classmethod
    def _transcribable(cls, value: str | None, info: ValidationInfo) -> str | None:
        speech = all(info.data.get(name) is None for name in _SOURCES)
        if value is None or not speech or info.data.get("provider", "local") != "local":
            return value
        if not value.strip():
            raise ValueError("must name a language, e.g. 'en'")
        if base_language(value) not in LOCAL_LANGUAGES:
            raise ValueError(
                f"the local recogniser transcribes {', '.join(sorted(LOCAL_LANGUAGES))} only; "
                f"to caption {value!r} speech set 'provider' to {' or '.join(REMOTE_TRANSCRIBERS)}"
            )
        return value

    @field_validator("style")
    @classmethod
    def _drawn(cls, value: SubtitleStyle, info: ValidationInfo) -> SubtitleStyle:
        if value.highlight == "word" and info.data.get("burn") is False:
            raise ValueError(
                "highlight 'word' is drawn into the picture, and burn is false; set burn to true or drop highlight"
            )
        return value

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[SyncFallback] | None, info: ValidationInfo) -> list[SyncFallback] | None:
        return _checked_fallbacks(cls, value, info)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give exactly one of 'text', 'cues' or 'srt' (got {', '.join(given)})")
        if not given and self.language is None:
            raise ValueError(
                "give exactly one of 'text', 'cues' or 'srt', or only 'language' to caption the video's speech "
                "(got none)"
            )
        return self


class ReframeParams(_Params):
    """reframe: the input video at another aspect ratio."""

    aspect_ratio: AspectRatioName = Field(alias="aspectRatio")
    mode: Literal["crop", "pad", "blur"] = "crop"


PARAMS_MODELS: dict[Operation, type[_Params]] = {
    Operation.GENERATE_VIDEO: GenerateVideoParams,
    Operation.MERGE: MergeParams,
    Operation.LIP_SYNC: LipSyncParams,
    Operation.ADD_SUBTITLES: AddSubtitlesParams,
    Operation.REFRAME: ReframeParams,
}

FALLBACK_OPERATIONS = (Operation.GENERATE_VIDEO, Operation.LIP_SYNC, Operation.ADD_SUBTITLES)

AnyParams = GenerateVideoParams | MergeParams | LipSyncParams | AddSubtitlesParams | ReframeParams


def parse_params(operation: Operation, params: dict[str, Any]) -> AnyParams:
    """Validate `params` for `operation`; raises pydantic.ValidationError."""
    model = PARAMS_MODELS[operation]
    parsed = model.model_validate(params)
    assert isinstance(parsed, AnyParams)
    return parsed


# How many video inputs each operation consumes: (minimum, maximum or None for unbounded).
VIDEO_INPUTS: dict[Operation, tuple[int, int | None]] = {
    Operation.GENERATE_VIDEO: (0, 0),
    Operation.MERGE: (1, None),
    Operation.LIP_SYNC: (1, 1),
    Operation.ADD_SUBTITLES: (1, 1),
    Operation.REFRAME: (1, 1),
}
