"""Remote nodes started ahead of their step, each in a thread of the run's process.

Why: the in-process executor runs steps one at a time, so remote generations (minutes of waiting on a
provider each) took the sum of their times. Local (FFmpeg) nodes never start ahead: x264 keeps the
cores busy already. A node runs at most once at a time (`take` marks it; a retried step runs it itself,
its provider job resumed through the ledger); `halt`/`close` cancel what runs ahead. One `HeadStarts`
per run, never global: a Celery child runs one run after another in the same process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from functools import partial

from video_pipelines.errors import TransientError, VideoPipelineError
from video_pipelines.nodes.runner import NodeRun
from video_pipelines.nodes.tasks import NodeTask, PlannedNode, planned_nodes
from video_pipelines.plan.results import VideoResult
from video_pipelines.plan.reuse import ResolvedPlan
from video_pipelines.providers.http import stopping_on

Log = Callable[[str], None]
# The work of a node: given where to log its lines and its warnings, run it.
Work = Callable[[Log, Log], NodeRun]

_AWAIT_SLICE = 0.2  # seconds: as `sleep_interruptibly`, so an interrupt of the main thread gets its turn


@dataclass
class Ahead:
    node_id: str
    key: object  # what the work was started with; a step with other inputs does not take it
    future: Future[NodeRun] = field(default_factory=Future)
    lines: list[tuple[bool, str]] = field(default_factory=list)  # (is a warning, message), appended by the thread
    started_at: float = field(default_factory=time.monotonic)
    taken: bool = False

    def line(self, warning: bool, message: str) -> None:
        self.lines.append((warning, f"[started ahead, +{time.monotonic() - self.started_at:.1f} s] {message}"))


class HeadStarts:
    def __init__(self, *, join_timeout: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._ahead: dict[str, Ahead] = {}
        self._in_step: set[str] = set()  # nodes whose step began without work started ahead
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self.halted_by: str | None = None
        self._planned: list[PlannedNode] = []  # the nodes to run, in plan order
        self._results: dict[str, VideoResult] = {}

    def know(self, execution_id: str, resolved: ResolvedPlan) -> None:
        planned = {each.node.id: each for each in planned_nodes(execution_id, resolved)}
        with self._lock:
            self._planned = [planned[node.id] for node in resolved.to_run]

    def results(self) -> dict[str, VideoResult]:
        with self._lock:
            return dict(self._results)

    def record(self, node_id: str, result: VideoResult) -> None:
        with self._lock:
            self._results[node_id] = result

    def halt(self, reason: str) -> None:
        """A node failed for good: start nothing more, cancel what runs ahead."""
        with self._lock:
            if self.halted_by is None:
                self.halted_by = reason
        self._stop.set()

    def ready(self) -> list[NodeTask]:
        """The remote nodes whose inputs all exist, not started nor in their step yet."""
        with self._lock:
            if self._stop.is_set():
                return []
            ready = []
            for planned in self._planned:
                node = planned.node
                if node.id in self._ahead or node.id in self._in_step or node.id in self._results or not node.is_remote:
                    continue
                try:
                    ready.append(planned.task(self._results))
                except KeyError:  # an ancestor that runs has no result yet
                    continue
            return ready

    def start(
        self,
        node_id: str,
        key: object,
        work: Work,
        *,
        then: Callable[[NodeRun, Log], None],
        falls_back: Callable[[BaseException], bool] = lambda _exc: False,
    ) -> bool:
        """Run `work` in a thread unless already started or its step began; `then` runs after it succeeds;
        `falls_back`: whether an error moves the node to a fallback provider (not a failure for good)."""
        with self._lock:
            if node_id in self._ahead or node_id in self._in_step or self._stop.is_set():
                return False
            ahead = Ahead(node_id, key)
            self._ahead[node_id] = ahead
            thread = threading.Thread(
                target=self._run, args=(ahead, work, then, falls_back), name=f"head-start-{node_id}", daemon=True
            )
            self._threads.append(thread)
        thread.start()
        return True

    def _run(
        self,
        ahead: Ahead,
        work: Work,
        then: Callable[[NodeRun, Log], None],
        falls_back: Callable[[BaseException], bool],
    ) -> None:
        try:
            with stopping_on(self._stop):
                result = work(partial(ahead.line, False), partial(ahead.line, True))
        except BaseException as exc:  # the step that takes it raises it (Abandoned included)
            if isinstance(exc, VideoPipelineError) and not isinstance(exc, TransientError) and not falls_back(exc):
                self.halt(f"{ahead.node_id} failed")  # no need to wait for its step to stop the rest
            ahead.future.set_exception(exc)
            return
        try:
            then(result, partial(ahead.line, False))
        except Exception as exc:  # the node itself succeeded: its step still gets the result
            ahead.line(True, f"could not start the nodes it made ready: {exc!r}")
        ahead.future.set_result(result)

    def take(self, node_id: str, key: object) -> Ahead | None:
        """The work started ahead for `node_id` with `key`, once; None: the step runs the node itself."""
        with self._lock:
            ahead = self._ahead.get(node_id)
            if ahead is None or ahead.taken or ahead.key != key:
                self._in_step.add(node_id)
                return None
            ahead.taken = True
            return ahead

    def close(self) -> list[str]:
        """Stop and join every thread (provider jobs canceled); the nodes whose work was abandoned."""
        with self._lock:
            self._stop.set()
            threads = list(self._threads)
            abandoned = [ahead.node_id for ahead in self._ahead.values() if not ahead.future.done()]
        deadline = time.monotonic() + self._join_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return abandoned


def await_result(ahead: Ahead, *, log: Log, warn: Log) -> NodeRun:
    """The result of work started ahead, passing on its lines; waits in slices so an interrupt gets its turn."""
    shown = 0
    while True:
        finished = bool(wait_futures([ahead.future], timeout=_AWAIT_SLICE).done)
        lines = ahead.lines[shown:]
        shown += len(lines)
        for warning, message in lines:
            (warn if warning else log)(message)
        if finished:
            return ahead.future.result()
