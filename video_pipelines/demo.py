"""`video-pipelines demo`: the main job on embedded defaults, end to end, with a readable report.

It runs the product demo as a base, then the French variant (reuses the base's scenes and
merge, adds lip-sync and subtitles) and the Spanish dependent plan (attaches to the base's
final video), serving its own sample voice tracks on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

from video_pipelines.examples import example_plan
from video_pipelines.executions import execution_status
from video_pipelines.instance import prepare_dagster_home
from video_pipelines.operations import run_ffmpeg
from video_pipelines.orchestration.config import PlanConfig
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.plan import load_plan_json, parse_plan
from video_pipelines.plan.results import VideoResult


def run_plan_in_process(plan_wire: dict[str, Any], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `execute_plan` on `plan_wire` in this process, against `instance`."""
    plan = parse_plan(plan_wire)
    run_config = dg.RunConfig(ops={"plan": PlanConfig.from_plan(plan)})
    return execute_plan_job().execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def node_results(result: dg.ExecuteInProcessResult) -> dict[str, VideoResult]:
    """Each node's video, from the run's asset materializations."""
    results: dict[str, VideoResult] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        results[str(metadata["node_id"].value)] = VideoResult.from_wire(metadata["result"].value)  # type: ignore[arg-type]
    return results


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve_voice_tracks() -> Iterator[str]:
    """Sample French and Spanish voice tracks (tones) over HTTP on 127.0.0.1; yields the base URL."""
    with tempfile.TemporaryDirectory(prefix="vp-demo-audio-") as folder:
        for name, frequency in (("french.mp3", 880), ("spanish.mp3", 660)):
            run_ffmpeg(
                ["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration=10", "-c:a", "libmp3lame",
                 str(Path(folder) / name)],
                description=f"render sample {name}",
            )  # fmt: skip
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=folder))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        previous = os.environ.get("VIDEO_PIPELINES_ALLOWED_HOSTS")
        os.environ["VIDEO_PIPELINES_ALLOWED_HOSTS"] = ",".join(filter(None, [previous, "127.0.0.1"]))
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            if previous is None:
                os.environ.pop("VIDEO_PIPELINES_ALLOWED_HOSTS", None)
            else:
                os.environ["VIDEO_PIPELINES_ALLOWED_HOSTS"] = previous


def _with_local_audio(plan: dict[str, Any], audio_base: str) -> dict[str, Any]:
    for job in plan["jobs"]:
        url = job.get("params", {}).get("audioUrl")
        if url:
            job["params"]["audioUrl"] = f"{audio_base}/{url.rsplit('/', 1)[-1]}"
    return plan


def _summary(name: str, instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    status = execution_status(DagsterRunRecords(instance), None, run_id).to_wire()
    jobs = status["jobs"]
    return {
        "name": name,
        "executionId": status["executionId"],
        "status": status["status"],
        "reused": [node for node, job in jobs.items() if job["status"] == "reused"],
        "computed": [node for node, job in jobs.items() if job["status"] == "completed"],
        "video": status["result"],
        "error": status["error"],
        "files": {node: job["result"]["url"] for node, job in jobs.items() if job["result"]},
    }


def run_demo(plan_file: str | None = None) -> int:
    home = prepare_dagster_home()
    print(f"DAGSTER_HOME={home}", file=sys.stderr)
    reports = []
    with dg.DagsterInstance.get() as instance:
        if plan_file:
            result = run_plan_in_process(load_plan_json(Path(plan_file).read_text()), instance)
            reports.append(_summary(plan_file, instance, result.run_id))
        else:
            with serve_voice_tracks() as audio_base:
                base = run_plan_in_process(example_plan("product_demo"), instance)
                reports.append(_summary("product_demo (base)", instance, base.run_id))
                if base.success:
                    for name in ("french_variant", "spanish_dependent"):
                        plan = _with_local_audio(example_plan(name), audio_base)
                        plan["baseExecutionId"] = base.run_id
                        result = run_plan_in_process(plan, instance)
                        reports.append(_summary(name, instance, result.run_id))
    print(json.dumps(reports, indent=2, ensure_ascii=False))
    return 0 if all(report["status"] == "completed" for report in reports) else 1
