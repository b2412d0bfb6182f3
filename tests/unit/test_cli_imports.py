"""The everyday commands import what they use and nothing more: each of Dagster, FastAPI and Celery costs a command
a second or more (benchmarks/bench_cli.py times the commands; a local `submit` took 2.4 s when it opened Dagster), and
httpx (with click and rich), the provider adapters, FFmpeg's operations, the webhook sender and the plan models a plan
does not use cost a local `submit` a third of its time (0.63 s before they were left out)."""

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
# What a local `submit` or `validate` of a plan without URLs or a webhook secret does not use: the HTTP client (and the CLI and
# terminal libraries httpx imports when installed), the webhook cipher, FFmpeg (imageio_ffmpeg)...
NOT_FOR_A_LOCAL_SUBMIT = {"httpx", "click", "rich", "pygments", "cryptography", "imageio_ffmpeg", "standardwebhooks"}
# ...and our modules that import them, or that only other commands use.
OURS_NOT_FOR_A_LOCAL_SUBMIT = {
    "video_pipelines.doors.api_client",
    "video_pipelines.net.fetch",
    "video_pipelines.webhooks.sender",
    "video_pipelines.executions.notifications",
    "video_pipelines.executions.parking",
    "video_pipelines.providers.local",
    "video_pipelines.providers.http",
    "video_pipelines.providers.fal",
    "video_pipelines.providers.replicate",
    "video_pipelines.providers.vertex",
    "video_pipelines.operations",
    "video_pipelines.storage",
    "video_pipelines.nodes.runner",
}
# The plan's models are built at their first use: a plan of generateVideo and merge nodes builds only theirs
# (and SubtitleStyle, whose default instance is made at import), not the other operations' nor the API's schema.
BUILT_BY_THE_DEMO_PLAN = {"GenerateVideoParams", "MergeParams", "SubtitleStyle"}


def imported_by(args: list[str], cwd: Path) -> tuple[str, set[str], set[str]]:
    """What `video-pipelines ARGS` prints, the modules it imported, and the plan's pydantic models it built (see
    BUILT_BY_THE_DEMO_PLAN), in a fresh interpreter."""
    code = (
        "import sys\nfrom video_pipelines.doors import cli\n"
        f"try:\n    cli.main({args!r})\nexcept SystemExit:\n    pass\n"
        "built = set()\n"
        "for name in ('video_pipelines.plan.params', 'video_pipelines.plan.document'):\n"
        "    for value in vars(sys.modules.get(name, sys)).values():\n"
        "        if getattr(value, '__pydantic_complete__', False) and value.__module__ == name:\n"
        "            built.add(value.__name__)\n"
        "sys.stderr.write('\\nBUILT ' + ' '.join(sorted(built)))\n"
        "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    built, modules = done.stderr.rsplit("\nBUILT ", 1)[1].split("\nMODULES ")
    return done.stdout, set(modules.split()), set(built.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_imports_neither_the_plan_models_nor_a_database(tmp_path: Path) -> None:
    answer, modules, _ = imported_by(["--help"], tmp_path)
    assert "submit" in answer
    assert not top_level(modules) & (SERVICES | {"pydantic", "sqlalchemy", "httpx"})


@pytest.mark.parametrize("verb", ["submit", "validate"])
def test_a_local_submit_and_validate_open_no_dagster(tmp_path: Path, verb: str) -> None:
    answer, modules, _ = imported_by([verb, "--json", str(PLAN)] if verb == "validate" else [verb, str(PLAN)], tmp_path)
    assert json.loads(answer)
    assert not top_level(modules) & SERVICES, top_level(modules) & SERVICES
    assert (tmp_path / ".dagster_home").is_dir() is (verb == "submit")  # validate makes no instance


def test_a_local_submit_and_validate_import_no_http_client_adapter_or_unused_model(tmp_path: Path) -> None:
    # The second submit and the validate find an instance (and its earlier executions), as a deployment's do.
    for args in (["submit", str(PLAN)], ["submit", str(PLAN)], ["validate", "--json", str(PLAN)]):
        answer, modules, built = imported_by(args, tmp_path)
        assert json.loads(answer)
        assert not top_level(modules) & NOT_FOR_A_LOCAL_SUBMIT, (args, top_level(modules) & NOT_FOR_A_LOCAL_SUBMIT)
        assert not modules & OURS_NOT_FOR_A_LOCAL_SUBMIT, (args, modules & OURS_NOT_FOR_A_LOCAL_SUBMIT)
        assert built == BUILT_BY_THE_DEMO_PLAN, args


@pytest.mark.parametrize("package", ["executions", "submissions", "net", "webhooks", "storage"])
def test_no_lazy_export_is_named_as_a_module_of_its_package(package: str) -> None:
    """Importing `package.x` sets the package's attribute `x` to that module, hiding an export named `x`."""
    loaded = importlib.import_module(f"video_pipelines.{package}")
    exports = {name for names in getattr(loaded, "_EXPORTS", {}).values() for name in names}
    modules = {module.name for module in pkgutil.iter_modules(loaded.__path__)}
    assert not exports & modules
