"""Example execution plans in the SDK wire format (the same as shared/plans)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from video_pipelines.plan import load_plan_json


def example_plan(name: str) -> dict[str, Any]:
    """One of the bundled example plans: product_demo, french_variant, spanish_dependent, vertical_short."""
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return load_plan_json(text)
