"""`RunRecords` kept in memory, so the execution life cycle is tested without a Dagster instance.

It answers exactly the questions the protocol asks, from what a test put in; the Dagster
implementation (`orchestration/run_records.py`) is tested through the job and sensor tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from video_pipelines.executions import NodeRecord, RunState, RunView
from video_pipelines.plan.results import VideoResult
from video_pipelines.vocabulary import NodeState


def video(name: str, duration: float = 2.0) -> VideoResult:
    return VideoResult(
        url=f"file:///artifacts/{name}.mp4",
        duration=duration,
        width=1280,
        height=720,
        aspect_ratio="16:9",
        size_bytes=1000,
        sha256=name.encode().hex().ljust(64, "0")[:64],
    )


@dataclass
class MemoryRunRecords:
    runs: list[RunView] = field(default_factory=list)  # oldest first
    nodes: dict[str, dict[str, NodeRecord]] = field(default_factory=dict)  # run id -> node id -> record
    steps: dict[str, dict[str, NodeState]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    node_failures: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> node id -> error
    messages: dict[str, list[str]] = field(default_factory=dict)  # run id -> its run events' messages
    ended: dict[str, datetime] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)  # run id -> how its worker was lost

    def add_run(
        self,
        execution_id: str,
        plan: Mapping[str, Any],
        state: RunState,
        *,
        run_id: str | None = None,
        nodes: Sequence[NodeRecord] = (),
        tags: Mapping[str, str] | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> RunView:
        run = RunView(
            run_id or f"run-{execution_id}", execution_id, state, plan, dict(tags or {}), started_at, ended_at
        )
        self.runs.append(run)
        self.nodes[run.run_id] = {record.node_id: record for record in nodes}
        if state.is_finished:
            self.ended[run.run_id] = datetime.now(UTC)
        return run

    def find_run(self, execution_id: str) -> RunView | None:
        return next((run for run in reversed(self.runs) if run.execution_id == execution_id), None)

    def execution_runs(self, execution_id: str) -> list[RunView]:
        return [run for run in self.runs if run.execution_id == execution_id]

    def lost_worker(self, run: RunView) -> str | None:
        return self.lost.get(run.run_id)

    def node_records(self, run_id: str) -> dict[str, NodeRecord]:
        return dict(self.nodes.get(run_id, {}))

    def node_steps(self, run_id: str, node_ids: Sequence[str]) -> dict[str, NodeState]:
        return {node_id: state for node_id, state in self.steps.get(run_id, {}).items() if node_id in node_ids}

    def failure_message(self, run_id: str) -> str:
        return self.failures.get(run_id, "the run failed")

    def node_errors(self, run_id: str, node_ids: Sequence[str]) -> dict[str, str]:
        return {node_id: error for node_id, error in self.node_failures.get(run_id, {}).items() if node_id in node_ids}

    def run_messages(self, run_id: str) -> list[str]:
        return list(self.messages.get(run_id, []))

    def ended_since(self, since: datetime, limit: int) -> list[RunView]:
        return [run for run in self.runs if run.run_id in self.ended and self.ended[run.run_id] >= since][:limit]

    def queued_runs(self) -> int:
        return sum(1 for run in self.runs if run.state is RunState.QUEUED)

    def terminate(self, run_id: str) -> None:
        self.terminated.append(run_id)

    def add_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        [index] = [index for index, run in enumerate(self.runs) if run.run_id == run_id]
        self.runs[index] = replace(self.runs[index], tags={**self.runs[index].tags, **tags})

    def cancel_unbegun(self, run_id: str) -> bool:
        return False  # as DefaultRunLauncher: no broker to take a launch back from
