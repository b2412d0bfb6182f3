"""Benchmark the media checks: the seconds they add per node next to the node's own work.

For 5 s and 20 s 1280x720 clips: the node's work is the local generateVideo render (the same
FFmpeg call a node makes), and a crossfade merge of two such clips; the checks are what
execute_plan adds per node (`operations.checks.check_media`: a probe and one decoding pass).
Prints the median of three runs of each and the ratio checks / work (target: at most 0.15).

Run: python benchmarks/bench_checks.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from video_pipelines.operations import generate_clip, merge_videos
from video_pipelines.operations.checks import MediaExpectations, check_media

RUNS = 3
TARGET_RATIO = 0.15


def median_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(label: str, work: float, checks: float) -> None:
    print(f"{label:<28} work {work:6.2f} s   checks {checks:5.2f} s   ratio {checks / work:5.3f}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vp-bench-checks-") as tmp:
        folder = Path(tmp)
        print(f"median of {RUNS} runs, target ratio <= {TARGET_RATIO}")
        for seconds in (5, 20):
            clip = folder / f"clip_{seconds}.mp4"
            other = folder / f"other_{seconds}.mp4"

            def render(out: Path = clip, seed: int = 1, duration: int = seconds) -> None:
                generate_clip(out, prompt="A benchmark scene", duration=duration, width=1280, height=720, seed=seed)

            work = median_seconds(render)
            render(other, seed=2)
            expected = MediaExpectations(duration=seconds, aspect_ratio="16:9", audio=True)
            outcomes = check_media(clip, expected, subject="bench (generateVideo)")
            assert all(outcome.passed for outcome in outcomes), [o.message for o in outcomes if not o.passed]
            checks = median_seconds(lambda path=clip, e=expected: check_media(path, e, subject="bench"))
            report(f"generateVideo {seconds} s 720p", work, checks)

            merged = folder / f"merged_{seconds}.mp4"
            merge = median_seconds(
                lambda a=clip, b=other, out=merged: merge_videos([a, b], out, transition="crossfade")
            )
            merged_expected = MediaExpectations(duration=2 * seconds - 0.5, aspect_ratio="16:9", audio=True)
            merge_checks = median_seconds(lambda path=merged, e=merged_expected: check_media(path, e, subject="bench"))
            report(f"merge 2x{seconds} s crossfade", merge, merge_checks)


if __name__ == "__main__":
    main()
