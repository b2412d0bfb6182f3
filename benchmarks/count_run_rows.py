"""Count the rows of an `execute_plan` run page: its event log, by kind.

Runs, in process on a fresh embedded instance, the plans of issue 12: three local nodes in a
chain (generateVideo -> lipSync -> addSubtitles, the voice track served on 127.0.0.1) and a
single generateVideo; then counts what the run page lists (`instance.all_logs(run_id)`):
every row, the Dagster events among them (the rest are plain log lines), STEP_SKIPPED,
HANDLED_OUTPUT / LOADED_INPUT, and the run's steps.

Run: PYTHONPATH=. python benchmarks/count_run_rows.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, from the repository root

from tests.dagster.harness import run_plan_in_process
from video_pipelines.deployment.instance import prepare_dagster_home
from video_pipelines.operations import run_ffmpeg


def gen(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "generateVideo", "params": {"prompt": node_id, "duration": 1, "resolution": 90}}


def three_nodes(voice_url: str) -> dict[str, Any]:
    return {
        "jobs": [
            gen("clip"),
            {"id": "voice", "type": "lipSync", "params": {"audioUrl": voice_url}, "dependsOn": ["clip"]},
            {"id": "subs", "type": "addSubtitles", "params": {"text": "Hello"}, "dependsOn": ["voice"]},
        ],
        "cache": False,
    }


@contextmanager
def serving(folder: Path) -> Iterator[int]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def count(instance: dg.DagsterInstance, run_id: str) -> tuple[dict[str, int], Counter[str]]:
    entries = instance.all_logs(run_id)
    kinds = Counter(entry.dagster_event.event_type_value for entry in entries if entry.dagster_event is not None)
    return {
        "rows": len(entries),
        "dagster_events": sum(kinds.values()),
        "log_lines": len(entries) - sum(kinds.values()),
        "STEP_SKIPPED": kinds["STEP_SKIPPED"],
        "steps": len({entry.step_key for entry in entries if entry.step_key}),
        "steps_started": kinds["STEP_START"],
        "HANDLED_OUTPUT": kinds["HANDLED_OUTPUT"],
        "LOADED_INPUT": kinds["LOADED_INPUT"],
        "STEP_OUTPUT": kinds["STEP_OUTPUT"],
        "STEP_INPUT": kinds["STEP_INPUT"],
    }, kinds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DAGSTER_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("VIDEO_PIPELINES_DATABASE_URL", None)
        os.environ.pop("VIDEO_PIPELINES_STORAGE_URL", None)
        os.environ["VIDEO_PIPELINES_ALLOWED_HOSTS"] = "127.0.0.1"
        prepare_dagster_home()
        media = Path(tmp) / "media"
        media.mkdir()
        voice = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "libmp3lame", str(media / "voice.mp3")]
        run_ffmpeg(voice, description="voice track")
        with serving(media) as port, dg.DagsterInstance.get() as instance:
            plans = {"3-node": three_nodes(f"http://127.0.0.1:{port}/voice.mp3"), "1-node": {"jobs": [gen("only")]}}
            for name, plan in plans.items():
                result = run_plan_in_process(plan, instance)
                assert result.success, name
                counts, kinds = count(instance, result.run_id)
                print(f"{name}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
                print("  by event type: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()))


if __name__ == "__main__":
    main()
