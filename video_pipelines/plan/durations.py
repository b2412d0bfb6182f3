"""The duration each node's video should have, known before anything runs (for cost estimates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from video_pipelines.plan.model import Plan, execution_order
from video_pipelines.plan.params import AnyParams, GenerateVideoParams, MergeParams, parse_params
from video_pipelines.plan.refs import REF_PATTERN, with_samples


def expected_durations(
    plan: Plan, *, external: Mapping[str, float] | None = None, base_final: float | None = None
) -> dict[str, float | None]:
    """Seconds of video per node, or None where a `{{ref}}` decides it (`external`, `base_final`: see lineage)."""
    external = external or {}
    durations: dict[str, float | None] = {}
    for node in execution_order(plan):
        if node.consumes_inputs and not node.depends_on:
            inputs: list[float | None] = [base_final]
        else:
            inputs = [durations[dep] if dep in durations else external.get(dep) for dep in node.depends_on]
        if any(isinstance(value, str) and REF_PATTERN.search(value) for value in node.params.values()):
            durations[node.id] = (inputs[0] if inputs else None) if node.consumes_inputs else None
            continue
        durations[node.id] = output_duration(parse_params(node.operation, with_samples(node.params)), inputs)
    return durations


def output_duration(params: AnyParams, inputs: Sequence[float | None]) -> float | None:
    """Seconds of video a node with `params` makes of inputs that last `inputs` seconds (None: not known)."""
    if isinstance(params, GenerateVideoParams):
        return params.duration
    if isinstance(params, MergeParams):
        known = [value for value in inputs if value is not None]
        overlap = 0.0 if params.transition == "cut" else params.transition_duration * (len(inputs) - 1)
        return sum(known) - overlap if len(known) == len(inputs) else None
    return inputs[0] if inputs else None
