"""The pricing table: defaults, file overrides (JSON and YAML), fallbacks, rounding and estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from video_pipelines.errors import VideoPipelineError
from video_pipelines.plan.params import (
    AddSubtitlesParams,
    GenerateVideoParams,
    LipSyncParams,
    MergeParams,
    ReframeParams,
)
from video_pipelines.providers import vertex
from video_pipelines.providers.pricing import (
    DEFAULT_MODELS,
    PRICING_FILE_ENV,
    Cost,
    Price,
    PricingTable,
)


def test_defaults_price_the_default_models() -> None:
    table = PricingTable()
    assert table.cost("google-cloud", "veo-2.0-generate-001", 8) == 4.0
    assert table.cost("replicate", "minimax/video-01", 6) == 0.5  # per call: the length does not matter
    assert table.price("fal", DEFAULT_MODELS[("generateVideo", "fal")]) is not None
    assert DEFAULT_MODELS[("generateVideo", "google-cloud")] == vertex.DEFAULT_MODEL
    for (_operation, provider), model in DEFAULT_MODELS.items():
        assert table.price(provider, model) is not None, (provider, model)


def test_local_costs_nothing_and_is_known() -> None:
    table = PricingTable()
    assert table.quote("local", None, 30) == Cost("local", None, 0.0, known=True, output_seconds=30)
    assert table.cost("local", "anything", 12.5) == 0.0


def test_unpriced_models_cost_zero_and_say_so() -> None:
    table = PricingTable()
    quote = table.quote("replicate", "someone/new-model", 5)
    assert (quote.usd, quote.known) == (0.0, False)
    assert table.price("replicate", "someone/new-model") is None
    assert table.price("acme-video", None) is None
    assert table.cost("acme-video", "x", 5) == 0.0


def test_a_json_file_overrides_and_extends_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pricing.json"
    path.write_text(
        json.dumps(
            {
                "google-cloud": {"veo-2.0-generate-001": {"per_call": 1.25}},
                "replicate": {"*": {"per_second": 0.1}},
            }
        )
    )
    table = PricingTable.from_env({PRICING_FILE_ENV: str(path)})
    # The file's entry replaces the default one whole: per_call now, no per_second.
    assert table.price("google-cloud", "veo-2.0-generate-001") == Price(per_call=1.25)
    assert table.cost("google-cloud", "veo-2.0-generate-001", 8) == 1.25
    # Other defaults stay.
    assert table.cost("google-cloud", "veo-3.0-generate-001", 10) == 4.0
    assert table.cost("replicate", "minimax/video-01", 6) == 0.5
    # "*" is the provider's fallback for models the table does not name.
    assert table.quote("replicate", "someone/new-model", 7) == Cost(
        "replicate", "someone/new-model", 0.7, known=True, output_seconds=7
    )
    assert table.cost("replicate", None, 3) == 0.3


def test_a_yaml_file_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "fal:\n"
        "  fal-ai/kling-video/v1.6/standard/text-to-video:\n"
        "    per_second: 0.07\n"
        "  '*':\n"
        "    per_call: 0.2\n"
        "    per_second: 0.01\n"
        "local:\n"
        "  '*': {per_second: 0.001}\n"
    )
    table = PricingTable.from_file(path)
    assert table.cost("fal", "fal-ai/kling-video/v1.6/standard/text-to-video", 10) == 0.7
    assert table.cost("fal", "fal-ai/other", 10) == 0.3  # per call + per second, added
    assert table.cost("local", None, 10) == 0.01


def test_without_the_variable_the_defaults_apply() -> None:
    assert PricingTable.from_env({}).prices == PricingTable().prices


@pytest.mark.parametrize(
    ("content", "suffix", "problem"),
    [
        ("{not json", ".json", "not valid .json"),
        ("[1, 2]", ".json", "expected a mapping"),
        ('{"fal": {"m": {"per_minute": 1}}}', ".json", r"fal\.m: unknown key\(s\) per_minute"),
        ('{"fal": {"m": {"per_call": -1}}}', ".json", r"fal\.m\.per_call must be a non-negative number"),
        ('{"fal": {"m": {"per_call": "cheap"}}}', ".json", r"fal\.m\.per_call must be a non-negative number"),
        ("fal: [1]", ".yml", "'fal' must map model names"),
    ],
)
def test_bad_pricing_files_name_the_entry(tmp_path: Path, content: str, suffix: str, problem: str) -> None:
    path = tmp_path / f"pricing{suffix}"
    path.write_text(content)
    with pytest.raises(VideoPipelineError, match=problem):
        PricingTable.from_file(path)


def test_a_missing_pricing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(VideoPipelineError, match=PRICING_FILE_ENV):
        PricingTable.from_env({PRICING_FILE_ENV: str(tmp_path / "nope.json")})


def test_costs_are_rounded_to_four_decimals() -> None:
    table = PricingTable(
        {"p": {"a": Price(per_second=0.00005), "b": Price(per_second=0.0117), "c": Price(per_call=1 / 3)}}
    )
    assert table.cost("p", "a", 1) == 0.0001  # half up, as written
    assert table.cost("p", "a", 0.9) == 0.0
    assert table.cost("p", "b", 7.3) == 0.0854  # 0.08541
    assert table.cost("p", "c", 0) == 0.3333
    with pytest.raises(VideoPipelineError, match="non-negative"):
        table.cost("p", "b", -1)


def test_estimate_a_generation_from_its_duration() -> None:
    table = PricingTable()
    node = GenerateVideoParams.model_validate({"prompt": "x", "duration": 6, "provider": "google-cloud"})
    assert table.estimate(node) == Cost("google-cloud", "veo-2.0-generate-001", 3.0, known=True, output_seconds=6)
    named = GenerateVideoParams.model_validate(
        {"prompt": "x", "provider": "google-cloud", "model": "veo-3.0-fast-generate-001"}
    )
    assert table.estimate(named) == Cost(
        "google-cloud", "veo-3.0-fast-generate-001", 0.75, known=True, output_seconds=5
    )
    local = GenerateVideoParams.model_validate({"prompt": "x", "duration": 60})
    assert table.estimate(local) == Cost("local", None, 0.0, known=True, output_seconds=60)


def test_estimate_a_lip_sync_from_its_input_duration() -> None:
    table = PricingTable()
    node = LipSyncParams.model_validate({"audioUrl": "https://example.com/voice.mp3", "provider": "fal"})
    assert table.estimate(node, input_seconds=10) == Cost(
        "fal", "fal-ai/sync-lipsync", 0.117, known=True, output_seconds=10
    )
    # Priced per second, input length unknown: nothing honest to say yet.
    assert table.estimate(node) is None

    per_call = PricingTable({"replicate": {"*": Price(per_call=0.4)}})
    replicate = LipSyncParams.model_validate({"audioUrl": "https://example.com/v.mp3", "provider": "replicate"})
    assert per_call.estimate(replicate) == Cost(
        "replicate", DEFAULT_MODELS[("lipSync", "replicate")], 0.4, known=True, output_seconds=None
    )
    unpriced = PricingTable({}).estimate(replicate)
    assert unpriced is not None and (unpriced.usd, unpriced.known) == (0.0, False)

    local = LipSyncParams.model_validate({"audioUrl": "https://example.com/v.mp3"})
    assert table.estimate(local) == Cost("local", None, 0.0, known=True, output_seconds=None)


def test_operations_without_a_provider_cost_nothing() -> None:
    table = PricingTable()
    for params in (MergeParams(), ReframeParams.model_validate({"aspectRatio": "9:16"})):
        assert table.estimate(params) == Cost("local", None, 0.0, known=True, output_seconds=None)


def test_speech_to_text_is_priced_by_the_seconds_of_audio() -> None:
    table = PricingTable()
    replicate = DEFAULT_MODELS[("addSubtitles", "replicate")]
    assert replicate.startswith("vaibhavs10/incredibly-fast-whisper:")  # pinned: a community model
    # A version takes the price of its model; 60 s of speech: 60 x 0.000015 + 0.002 per prediction.
    assert table.cost("replicate", replicate, 60) == 0.0029
    assert table.cost("replicate", "vaibhavs10/incredibly-fast-whisper", 60) == 0.0029
    assert table.cost("fal", DEFAULT_MODELS[("addSubtitles", "fal")], 60) == 0.0076
    assert table.cost("replicate", "kwaivgi/kling-v1.6-standard:abc", 2) == 0.1  # any pinned version
    for provider in ("replicate", "fal"):
        assert table.cost(provider, DEFAULT_MODELS[("addSubtitles", provider)], 1) > 0


def test_estimate_captions_from_speech_from_the_input_duration() -> None:
    table = PricingTable()
    node = AddSubtitlesParams.model_validate({"language": "de", "provider": "fal"})
    assert table.estimate(node, input_seconds=60) == Cost("fal", "fal-ai/whisper", 0.0076, True, 60)
    assert table.estimate(node) is None  # per second of audio, the length not known yet
    named = AddSubtitlesParams.model_validate({"language": "de", "provider": "fal", "model": "fal-ai/wizper"})
    assert table.estimate(named, input_seconds=60) == Cost("fal", "fal-ai/wizper", 0.0046, True, 60)
    local = AddSubtitlesParams.model_validate({"language": "en"})
    assert table.estimate(local, input_seconds=60) == Cost("local", None, 0.0, known=True, output_seconds=60)
    given = AddSubtitlesParams.model_validate({"text": "Hallo"})
    assert table.estimate(given, input_seconds=60) == Cost("local", None, 0.0, known=True, output_seconds=None)
