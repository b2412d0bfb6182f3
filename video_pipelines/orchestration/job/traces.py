"""Spans of `execute_plan` runs: one per node (run or reused); the execution's is recorded at its end.

The parent comes from the run's traceparent tag (`TRACEPARENT_TAG`), else its execution id, so every step process
finds the same parent without asking anyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg
from opentelemetry.trace import Span

from video_pipelines.executions import EXECUTION_ID_TAG, TRACEPARENT_TAG
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.nodes.tasks import NodeTask
from video_pipelines.plan import Plan
from video_pipelines.plan.reuse import NodeDecision
from video_pipelines.telemetry.trace_context import TraceContext, execution_context
from video_pipelines.telemetry.tracing import best_effort, span_in, tracing


def run_trace(run: dg.DagsterRun) -> TraceContext:
    return execution_context(run.tags.get(TRACEPARENT_TAG), run.tags.get(EXECUTION_ID_TAG, run.run_id))


class NodeSpan:
    def __init__(self, span: Span) -> None:
        self.span = span

    def ran(self, run: NodeRun) -> None:
        self.span.set_attributes(
            {
                "video_pipelines.provider": run.provider or "local",
                "video_pipelines.work_seconds": run.seconds,
                "video_pipelines.cost_usd": run.cost_usd,
            }
        )
        if run.model:
            self.span.set_attribute("video_pipelines.model", run.model)


@contextmanager
def node_span(run: dg.DagsterRun, task: NodeTask, *, attempt: int) -> Iterator[NodeSpan]:
    """The span `node <id>` around a node's work; given the run, not a step's context (work may run ahead)."""
    node = task.node
    attributes = {
        "video_pipelines.execution_id": task.execution_id,
        "video_pipelines.node_id": node.id,
        "video_pipelines.operation": node.operation.value,
        "video_pipelines.reused": False,
        "video_pipelines.run_id": run.run_id,
        "video_pipelines.attempt": attempt,
    }
    with span_in(run_trace(run), f"node {node.id}", attributes=attributes) as span:
        yield NodeSpan(span)


@best_effort
def trace_reused(context: dg.OpExecutionContext, execution_id: str, plan: Plan, reused: Iterable[NodeDecision]) -> None:
    if not tracing().enabled:
        return
    parent = run_trace(context.run)
    for decision in reused:
        attributes = {
            "video_pipelines.execution_id": execution_id,
            "video_pipelines.node_id": decision.node_id,
            "video_pipelines.operation": plan.node(decision.node_id).operation.value,
            "video_pipelines.reused": True,
            "video_pipelines.reused_from": decision.reused_from or "",
            "video_pipelines.run_id": context.run_id,
        }
        with span_in(parent, f"node {decision.node_id}", attributes=attributes):
            pass
