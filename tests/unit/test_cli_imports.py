"""The everyday commands import what they use and nothing more: each of Dagster, FastAPI and Celery costs a command
a second or more (benchmarks/bench_cli.py times the commands; a local `submit` took 2.4 s when it opened Dagster)."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PLAN = Path(__file__).resolve().parents[2] / "video_pipelines" / "examples" / "product_demo.json"
SERVICES = {"dagster", "fastapi", "celery", "uvicorn", "alembic", "boto3"}


def imported_by(args: list[str], cwd: Path) -> tuple[str, set[str]]:
    """What `video-pipelines ARGS` prints, and the top-level packages it imported, in a fresh interpreter."""
    code = (
        "import sys\nfrom video_pipelines.doors import cli\n"
        f"try:\n    cli.main({args!r})\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\nMODULES ' + ' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout, set(done.stderr.rsplit("MODULES ", 1)[1].split())


def test_help_imports_neither_the_plan_models_nor_a_database(tmp_path: Path) -> None:
    answer, modules = imported_by(["--help"], tmp_path)
    assert "submit" in answer
    assert not modules & (SERVICES | {"pydantic", "sqlalchemy", "httpx"})


@pytest.mark.parametrize("verb", ["submit", "validate"])
def test_a_local_submit_and_validate_open_no_dagster(tmp_path: Path, verb: str) -> None:
    answer, modules = imported_by([verb, "--json", str(PLAN)] if verb == "validate" else [verb, str(PLAN)], tmp_path)
    assert json.loads(answer)
    assert not modules & SERVICES, modules & SERVICES
    assert (tmp_path / ".dagster_home").is_dir() is (verb == "submit")  # validate makes no instance


@pytest.mark.parametrize("package", ["executions", "submissions", "net", "webhooks", "storage"])
def test_no_lazy_export_is_named_as_a_module_of_its_package(package: str) -> None:
    """Importing `package.x` sets the package's attribute `x` to that module, hiding an export named `x`."""
    loaded = importlib.import_module(f"video_pipelines.{package}")
    exports = {name for names in getattr(loaded, "_EXPORTS", {}).values() for name in names}
    modules = {module.name for module in pkgutil.iter_modules(loaded.__path__)}
    assert not exports & modules
