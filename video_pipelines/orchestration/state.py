"""What flows between the steps of execute_plan: the plan state and one task per node."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import dagster as dg

from video_pipelines.node_checks import audio_expected
from video_pipelines.plan import PlanNode, sinks
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")


def mapping_key(node_id: str) -> str:
    """A Dagster mapping key for a node id: the id itself when it is safe, else a safe form plus a hash.

    Node ids may hold '-', which mapping keys may not; the hash keeps `a-b` and `a_b` apart.
    """
    if not _UNSAFE_KEY_CHARS.search(node_id):
        return node_id
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:6]
    return f"{_UNSAFE_KEY_CHARS.sub('_', node_id)}_{digest}"


@dataclass(frozen=True)
class NodeTask:
    """What one node step needs: the node, its input videos, the results its refs may name, its lineage."""

    execution_id: str
    node: PlanNode
    inputs: tuple[VideoResult, ...]
    upstream: dict[str, VideoResult]
    lineage: str
    audio_expected: bool = False  # whether its video should have sound (the media checks, `node_checks`)


@dataclass(frozen=True)
class NodeOutput:
    node_id: str
    result: VideoResult


@dataclass(frozen=True)
class PlanState:
    """The plan as it runs: what runs at which level, and the results so far."""

    execution_id: str
    resolved: ResolvedPlan
    levels: dict[str, int]  # of the nodes that run
    results: dict[str, VideoResult] = field(default_factory=dict)

    @property
    def last_level(self) -> int:
        return max(self.levels.values(), default=-1)

    def with_outputs(self, outputs: list[NodeOutput]) -> PlanState:
        return replace(self, results={**self.results, **{out.node_id: out.result for out in outputs}})

    def final(self) -> tuple[str, VideoResult]:
        """The final node (the last sink in plan order) and its video."""
        node = sinks(self.resolved.plan)[-1]
        decision = self.resolved.decisions[node.id]
        return node.id, decision.result if decision.result is not None else self.results[node.id]

    def tasks(self, level: int) -> Iterator[dg.DynamicOutput[NodeTask]]:
        """The steps of `level`, local nodes first.

        The in-process executor runs a level's steps in this order: a local node runs while the
        remote nodes started ahead wait on their providers, before their steps await them.
        """
        nodes = [node for node in self.resolved.to_run if self.levels[node.id] == level]
        audio = audio_expected(self.resolved.plan)
        for node in sorted(nodes, key=lambda node: node.is_remote):
            task = NodeTask(
                execution_id=self.execution_id,
                node=node,
                inputs=tuple(self.resolved.inputs(node, self.results)),
                upstream=self.resolved.upstream(node, self.results),
                lineage=self.resolved.lineage[node.id],
                audio_expected=audio[node.id],
            )
            yield dg.DynamicOutput(task, mapping_key=mapping_key(node.id), output_name="tasks")


def step_key(level: int, node_id: str) -> str:
    """The Dagster step key of a node's step at `level` (`level_0[scene_1]`)."""
    return f"level_{level}[{mapping_key(node_id)}]"
