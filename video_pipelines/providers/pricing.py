"""What a provider call costs in US dollars: `per_second`, `per_call`, or both, per provider and model.

`"*"` is a provider's fallback, `owner/name:version` falls back to `owner/name`; `VIDEO_PIPELINES_PRICING_FILE`
replaces entries. An unpriced model costs 0.0 with `known=False` ("unpriced", not "free").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

from video_pipelines.errors import VideoPipelineError
from video_pipelines.plan.params import AddSubtitlesParams, AnyParams, GenerateVideoParams, LipSyncParams

# estimate() prices a node without a `model` param as its provider's default model.
from video_pipelines.providers.models import DEFAULT_MODELS as DEFAULT_MODELS

PRICING_FILE_ENV = "VIDEO_PIPELINES_PRICING_FILE"
FALLBACK = "*"
_CENT_FRACTION = Decimal("0.0001")


@dataclass(frozen=True)
class Price:
    """USD per second (of output video, or of transcribed audio) and/or per call."""

    per_second: float = 0.0
    per_call: float = 0.0

    def usd(self, output_seconds: float) -> float:
        """The cost of one call producing `output_seconds` of video, rounded to 4 decimals."""
        if not math.isfinite(output_seconds) or output_seconds < 0:
            raise VideoPipelineError(f"output_seconds must be a finite, non-negative number, got {output_seconds}")
        # Decimal from the shortest repr, so 0.00005 rounds up as written rather than as stored.
        total = Decimal(repr(self.per_second)) * Decimal(repr(float(output_seconds))) + Decimal(repr(self.per_call))
        return float(total.quantize(_CENT_FRACTION, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Cost:
    """A priced call: `usd` is 0.0 with `known=False` when the table has no price for it."""

    provider: str
    model: str | None
    usd: float
    known: bool
    output_seconds: float | None


DEFAULT_PRICES: Mapping[str, Mapping[str, Price]] = {
    "local": {FALLBACK: Price()},
    "google-cloud": {
        "veo-2.0-generate-001": Price(per_second=0.50),
        "veo-3.0-generate-001": Price(per_second=0.40),
        "veo-3.0-fast-generate-001": Price(per_second=0.15),
    },
    "replicate": {
        "kwaivgi/kling-v1.6-standard": Price(per_second=0.05),
        "kwaivgi/kling-lip-sync": Price(per_second=0.014),
        "minimax/video-01": Price(per_call=0.50),
        # Billed by GPU time, not by audio: Nvidia A100 (80GB) at $0.0014/s (replicate.com/pricing);
        # it transcribes about 150 minutes of audio in 98 s there (insanely-fast-whisper's README), so about
        # $0.000015 a second of audio, plus a second or two of GPU for any prediction's start.
        "vaibhavs10/incredibly-fast-whisper": Price(per_second=0.000015, per_call=0.002),
    },
    "fal": {
        "fal-ai/kling-video/v1.6/standard/text-to-video": Price(per_second=0.045),
        "fal-ai/sync-lipsync": Price(per_second=0.0117),
        # Billed by compute second (fal.ai/models/fal-ai/whisper); an estimate at fal's GPU rate
        # of about $0.0011/s and ten seconds of audio per compute second, plus a request's start.
        "fal-ai/whisper": Price(per_second=0.00011, per_call=0.001),
        "fal-ai/wizper": Price(per_second=0.00006, per_call=0.001),
    },
}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise VideoPipelineError(f"{where} must be a non-negative number of US dollars, got {value!r}")
    return float(value)


def parse_prices(data: Any, *, source: str) -> dict[str, dict[str, Price]]:
    """Validate a pricing document (`{provider: {model: {per_second|per_call: usd}}}`); errors name the entry."""
    if not isinstance(data, dict):
        raise VideoPipelineError(f"{source}: expected a mapping of provider -> model -> price")
    table: dict[str, dict[str, Price]] = {}
    for provider, models in data.items():
        if not isinstance(models, dict):
            raise VideoPipelineError(f"{source}: {provider!r} must map model names (or '*') to prices")
        table[str(provider)] = {}
        for model, entry in models.items():
            where = f"{source}: {provider}.{model}"
            if not isinstance(entry, dict) or not entry:
                raise VideoPipelineError(f"{where} must be an object with per_second and/or per_call")
            unknown = sorted(set(entry) - {"per_second", "per_call"})
            if unknown:
                raise VideoPipelineError(f"{where}: unknown key(s) {', '.join(unknown)} (use per_second, per_call)")
            table[str(provider)][str(model)] = Price(
                per_second=_number(entry.get("per_second", 0), f"{where}.per_second"),
                per_call=_number(entry.get("per_call", 0), f"{where}.per_call"),
            )
    return table


class PricingTable:
    """Prices per provider and model; see the module docstring."""

    def __init__(self, prices: Mapping[str, Mapping[str, Price]] = DEFAULT_PRICES) -> None:
        self.prices: dict[str, dict[str, Price]] = {provider: dict(models) for provider, models in prices.items()}

    @classmethod
    def from_file(cls, path: Path, *, base: Mapping[str, Mapping[str, Price]] = DEFAULT_PRICES) -> PricingTable:
        """`base` (the defaults) with the entries of a JSON or YAML pricing file laid over it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise VideoPipelineError(f"cannot read the pricing file {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise VideoPipelineError(f"the pricing file {path} is not valid {path.suffix or 'YAML'}: {exc}") from None
        table = cls(base)
        for provider, models in parse_prices(data, source=str(path)).items():
            table.prices.setdefault(provider, {}).update(models)
        return table

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PricingTable:
        """The defaults, overridden by the file `VIDEO_PIPELINES_PRICING_FILE` names when it is set."""
        env = os.environ if environ is None else environ
        path = env.get(PRICING_FILE_ENV, "").strip()
        if not path:
            return cls()
        file = Path(path)
        if not file.is_file():
            raise VideoPipelineError(f"{PRICING_FILE_ENV} names {path}, which is not a file")
        return cls.from_file(file)

    def price(self, provider: str, model: str | None) -> Price | None:
        """The price of `model` (or, without one, the provider's fallback); None when unpriced."""
        models = self.prices.get(provider, {})
        if model is not None:
            for name in (model, model.partition(":")[0]):
                if name in models:
                    return models[name]
        return models.get(FALLBACK)

    def quote(self, provider: str, model: str | None, output_seconds: float) -> Cost:
        """The cost of one call with its `known` flag (False: no price, usd 0.0)."""
        price = self.price(provider, model)
        usd = 0.0 if price is None else price.usd(output_seconds)
        return Cost(provider, model, usd, known=price is not None, output_seconds=output_seconds)

    def cost(self, provider: str, model: str | None, output_seconds: float) -> float:
        """USD for one call producing `output_seconds` of video, rounded to 4 decimals; 0.0 when unpriced."""
        return self.quote(provider, model, output_seconds).usd

    def estimate(self, params: AnyParams, *, input_seconds: float | None = None) -> Cost | None:
        """What a node should cost before it runs: generateVideo by `duration`, lipSync and speech by
        `input_seconds` (None when unknown); operations without a provider cost 0."""
        if isinstance(params, GenerateVideoParams):
            model = params.model or DEFAULT_MODELS.get(("generateVideo", params.provider))
            return self.quote(params.provider, model, params.duration)
        if not (isinstance(params, LipSyncParams) or (isinstance(params, AddSubtitlesParams) and params.from_speech)):
            return Cost("local", None, 0.0, known=True, output_seconds=None)
        operation = "lipSync" if isinstance(params, LipSyncParams) else "addSubtitles"
        model = params.model or DEFAULT_MODELS.get((operation, params.provider))
        if input_seconds is not None:
            return self.quote(params.provider, model, input_seconds)
        price = self.price(params.provider, model)
        if price is None:
            return Cost(params.provider, model, 0.0, known=False, output_seconds=None)
        # A per-call price needs no duration; a per-second one cannot be told yet.
        return None if price.per_second != 0.0 else Cost(params.provider, model, price.usd(0.0), True, None)
