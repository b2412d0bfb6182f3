"""The execution plan: model, validation, graph algorithms and lineage (no Dagster here)."""

from __future__ import annotations

from video_pipelines.plan.lineage import lineage_hashes
from video_pipelines.plan.model import (
    Plan,
    PlanNode,
    execution_order,
    find_cycle,
    levels,
    load_plan_json,
    parse_plan,
    sinks,
)
from video_pipelines.plan.params import Operation
from video_pipelines.vocabulary import Priority

__all__ = [
    "Operation",
    "Plan",
    "PlanNode",
    "Priority",
    "execution_order",
    "find_cycle",
    "levels",
    "lineage_hashes",
    "load_plan_json",
    "parse_plan",
    "sinks",
]
