"""What flows between the steps of execute_plan: the plan state and one task per node."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import dagster as dg

from video_pipelines.plan import Plan, PlanNode, ancestors
from video_pipelines.plan.results import VideoResult

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
    """What one node step needs: the node, its inputs' results and its lineage."""

    execution_id: str
    node: PlanNode
    inputs: tuple[VideoResult, ...]
    upstream: dict[str, VideoResult]
    lineage: str


@dataclass(frozen=True)
class NodeOutput:
    node_id: str
    result: VideoResult


@dataclass(frozen=True)
class PlanState:
    """The plan as it runs: validated plan, lineages and the results so far."""

    execution_id: str
    plan: Plan
    lineage: dict[str, str]
    levels: dict[str, int]
    results: dict[str, VideoResult] = field(default_factory=dict)

    def with_outputs(self, outputs: list[NodeOutput]) -> PlanState:
        return replace(self, results={**self.results, **{out.node_id: out.result for out in outputs}})

    def tasks(self, level: int) -> Iterator[dg.DynamicOutput[NodeTask]]:
        for node in self.plan.nodes:
            if self.levels[node.id] != level:
                continue
            task = NodeTask(
                execution_id=self.execution_id,
                node=node,
                inputs=tuple(self.results[dep] for dep in node.depends_on if node.consumes_inputs),
                upstream={dep: self.results[dep] for dep in _ancestors(self.plan, node)},
                lineage=self.lineage[node.id],
            )
            yield dg.DynamicOutput(task, mapping_key=mapping_key(node.id), output_name="tasks")


def _ancestors(plan: Plan, node: PlanNode) -> list[str]:
    return sorted(ancestors(plan, node.id))
