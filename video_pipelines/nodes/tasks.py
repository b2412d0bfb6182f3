"""What a node of a run needs: the planned node `plan` hands out, and its task once its inputs exist."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from video_pipelines.nodes.checks import audio_expected
from video_pipelines.plan import PlanNode
from video_pipelines.plan.model import ancestors
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan


@dataclass(frozen=True)
class NodeTask:
    execution_id: str
    node: PlanNode
    inputs: tuple[VideoResult, ...]
    upstream: dict[str, VideoResult]
    lineage: str
    audio_expected: bool = False  # whether its video should have sound (the media checks, `nodes.checks`)


@dataclass(frozen=True)
class PlannedNode:
    """What `plan` hands one node step; its inputs' videos (`needs`) are found when the step starts."""

    execution_id: str
    node: PlanNode
    lineage: str
    audio_expected: bool
    needs: dict[str, str]  # the ancestors that run in this run: node id -> lineage
    known: dict[str, VideoResult]  # the results of its other ancestors (and base outputs), known at `plan`
    ancestors: tuple[str, ...]  # what its `{{refs}}` may name, in order
    base_final: VideoResult | None = None  # the base's final video, the input of a node that names none

    def task(self, results: Mapping[str, VideoResult]) -> NodeTask:
        have = {**self.known, **{node_id: results[node_id] for node_id in self.needs}}
        node = self.node
        if not node.consumes_inputs:
            inputs: tuple[VideoResult, ...] = ()
        elif not node.depends_on and self.base_final is not None:
            inputs = (self.base_final,)
        else:
            inputs = tuple(have[dep] for dep in node.depends_on)
        upstream = {dep: have[dep] for dep in self.ancestors}
        return NodeTask(self.execution_id, node, inputs, upstream, self.lineage, self.audio_expected)


def planned_nodes(execution_id: str, resolved: ResolvedPlan) -> list[PlannedNode]:
    """The nodes to run, after their dependencies; within a level local ones first, so they run while
    remote nodes started ahead wait on their providers (the in-process executor keeps this order).
    """
    levels = resolved.run_levels()
    order = {node.id: index for index, node in enumerate(resolved.plan.nodes)}
    nodes = sorted(resolved.to_run, key=lambda node: (levels[node.id], node.is_remote, order[node.id]))
    audio = audio_expected(resolved.plan)
    planned = []
    for node in nodes:
        ancestors_of = tuple(sorted(ancestors(resolved.plan, node.id)))
        needs = {dep: resolved.lineage[dep] for dep in ancestors_of if dep in levels}
        known = {dep: resolved.result(dep) for dep in ancestors_of if dep not in levels}
        planned.append(
            PlannedNode(
                execution_id,
                node,
                resolved.lineage[node.id],
                audio[node.id],
                needs,
                known,
                ancestors_of,
                resolved.base_final if node.consumes_inputs and not node.depends_on else None,
            )
        )
    return planned
