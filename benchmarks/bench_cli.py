"""Benchmark the everyday commands as a user runs them: each a new `video-pipelines` process.

Times, as the median of --runs processes each, wall clock and CPU (user + system: steadier than the wall
clock on a busy machine):
- `video-pipelines --help`;
- `validate` of the product demo plan;
- `submit` of it on the local deployment, on the embedded default (SQLite) and on PostgreSQL (the production
  dagster.yaml on a fresh database; no daemon, so the submissions stay pending and only the command is measured);
- `status` of a submitted execution (SQLite);
and `python -c pass` for the interpreter's own start, with each command's ratio to it.
Target: a local `submit` in 0.5 s or less on a quiet machine.

As an installed package runs: the console script beside this interpreter (not a version manager's shim on PATH,
which starts a shell before Python: pyenv's costs about 0.1 s), with bytecode (an installed package has it; the
first, untimed run of each command writes it to a folder of the benchmark's own, also under
PYTHONDONTWRITEBYTECODE, which makes every run compile the package anew).

Run from the repository root: python benchmarks/bench_cli.py [--runs 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import fresh_database
from video_pipelines.deployment.instance import render_instance_yaml

PLAN = Path(__file__).resolve().parents[1] / "video_pipelines" / "examples" / "product_demo.json"
INSTALLED = Path(sys.executable).with_name("video-pipelines")
COMMAND = str(INSTALLED) if INSTALLED.is_file() else shutil.which("video-pipelines") or "video-pipelines"


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """One process: (wall seconds, CPU seconds, stdout); a failed command stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def median_of(runs: int, command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    timed(command, env, cwd)  # untimed: writes the bytecode the timed runs read
    samples = [timed(command, env, cwd)[:2] for _ in range(runs)]
    return {
        "wall_s": round(statistics.median(wall for wall, _ in samples), 3),
        "cpu_s": round(statistics.median(cpu for _, cpu in samples), 3),
    }


def clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    """This environment without deployment settings (no API URL: every command is local), with its bytecode in
    `workdir` (see the module docstring), plus `extra`."""
    unset = ("DAGSTER_HOME", "VIDEO_PIPELINES_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
    return {**env, "PYTHONPYCACHEPREFIX": str(workdir / "bytecode"), **extra}


@contextmanager
def postgres_home(folder: Path) -> Iterator[dict[str, str]]:
    """The environment of a production instance folder on a fresh PostgreSQL database."""
    with fresh_database() as url:
        folder.mkdir()
        (folder / "dagster.yaml").write_text(render_instance_yaml(postgres=True))
        yield clean_env(folder.parent, DAGSTER_HOME=str(folder), VIDEO_PIPELINES_DATABASE_URL=url)


def measure(runs: int, workdir: Path) -> dict[str, dict[str, float]]:
    sqlite = clean_env(workdir, DAGSTER_HOME=str(workdir / "sqlite"))
    submit = [COMMAND, "submit", str(PLAN)]
    # The first submit makes the instance: the runs measured are those of an existing deployment.
    execution_id = json.loads(timed(submit, sqlite, workdir)[2])["executionId"]
    results = {
        "python -c pass": median_of(runs, [sys.executable, "-c", "pass"], sqlite, workdir),
        "--help": median_of(runs, [COMMAND, "--help"], sqlite, workdir),
        "validate": median_of(runs, [COMMAND, "validate", str(PLAN)], sqlite, workdir),
        "submit (SQLite)": median_of(runs, submit, sqlite, workdir),
        "status (SQLite)": median_of(runs, [COMMAND, "status", execution_id], sqlite, workdir),
    }
    with postgres_home(workdir / "postgres") as postgres:
        timed(submit, postgres, workdir)
        results["submit (PostgreSQL)"] = median_of(runs, submit, postgres, workdir)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=9, help="processes per command (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder:
        results = measure(args.runs, Path(folder))
    start = results["python -c pass"]
    report: dict[str, Any] = {
        "runs": args.runs,
        "load_average": os.getloadavg()[0],
        "commands": {
            name: {**numbers, "x_python_start": round(numbers["wall_s"] / start["wall_s"], 1)}
            for name, numbers in results.items()
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"median of {args.runs} processes each (load average {report['load_average']:.1f}):")
    for name, numbers in report["commands"].items():
        print(
            f"  {name:<22} {numbers['wall_s']:6.3f} s wall  {numbers['cpu_s']:6.3f} s CPU  "
            f"{numbers['x_python_start']:5.1f}x python's start"
        )


if __name__ == "__main__":
    main()
