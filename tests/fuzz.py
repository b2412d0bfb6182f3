"""The API fuzz: Schemathesis' CLI (`st run`, every check) against a real `video-pipelines serve` on PostgreSQL.

    with fuzz_target(tmp_path) as target:
        result = run_fuzz(target, max_examples=20, folder=tmp_path)
        assert result.passed, result.report

Used by tests/e2e/test_fuzz_api.py (bounded, in CI) and benchmarks/fuzz_api.py (the long run). The
settings are tests/schemathesis.toml, the hooks tests/fuzz_hooks.py; `st` runs in `folder`, so
Hypothesis' and Schemathesis' caches land there, not in the repository. Its report names each
failure with a curl command that reproduces it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from video_pipelines.deployment.instance import render_instance_yaml

from .api_process import ApiServer, api_process
from .fuzz_hooks import STATS_ENV, SUBMIT
from .processes import REPO, WORKSPACE, DagsterDeployment, deployment_database

CONFIG = REPO / "tests" / "schemathesis.toml"
HEALTH = "GET /health"


@dataclass
class FuzzTarget:
    deployment: DagsterDeployment  # its env and logs; the daemon is started only when plans should run
    server: ApiServer
    key: str

    def start_daemon(self) -> None:
        self.deployment.start("daemon", ["video-pipelines", "daemon", "-w", str(WORKSPACE)])


@dataclass
class FuzzResult:
    returncode: int
    report: str  # st's output: phases, failures with their curl, the seed
    calls: list[dict[str, Any]] = field(default_factory=list)  # one per answered request (fuzz_hooks.after_call)

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    @property
    def statuses(self) -> Counter[tuple[str, str, int]]:
        return Counter((call["operation"], call["mode"], call["status"]) for call in self.calls)

    @property
    def server_errors(self) -> int:
        """5xx answers, but /health's documented 503 (the daemon is not running while the fuzz does)."""
        return sum(1 for call in self.calls if call["status"] >= 500 and call["operation"] != HEALTH)

    @property
    def submitted(self) -> int:
        """Positive `POST /api/execute` cases: plans valid for the schema."""
        return sum(1 for call in self.calls if call["operation"] == SUBMIT and call["mode"] == "positive")

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The answers 202 to `POST /api/execute`, each with its executionId and plan; not those the fuzz canceled."""
        canceled = {
            call["target"] for call in self.calls if call["operation"].endswith("/cancel") and call["status"] == 202
        }
        return [call for call in self.calls if "executionId" in call and call["executionId"] not in canceled]

    def summary(self) -> str:
        share = len([c for c in self.accepted if c["mode"] == "positive"]) / max(self.submitted, 1)
        tail = self.report.strip().splitlines()[-1] if self.report.strip() else ""
        return (
            f"{len(self.calls)} requests, {self.server_errors} answered 5xx; POST /api/execute: "
            f"{self.submitted} schema-valid plans, {share:.0%} accepted (202); st: {tail}"
        )


@contextmanager
def fuzz_target(tmp: Path) -> Iterator[FuzzTarget]:
    """`video-pipelines serve` on a fresh PostgreSQL database, with a tenant's key; no daemon until asked."""
    with deployment_database() as database_url:
        home, logs = tmp / "dagster_home", tmp / "logs"
        home.mkdir()
        logs.mkdir()
        (home / "dagster.yaml").write_text(render_instance_yaml(postgres=True, celery=False))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "VIDEO_PIPELINES_DATABASE_URL": database_url,
            "VIDEO_PIPELINES_STORAGE_URL": (tmp / "artifacts").as_uri(),
            "VIDEO_PIPELINES_SECRET_KEY": "fuzz-passphrase",
        }
        made = subprocess.run(
            ["video-pipelines", "api-keys", "create", "--name", "fuzz", "--tenant", "acme"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        deployment = DagsterDeployment(home=home, env=env, port=0, logs=logs)
        try:
            with api_process(env=env, logs=logs) as server:
                yield FuzzTarget(deployment, server, json.loads(made.stdout)["key"])
        finally:
            deployment.stop_all()


def run_fuzz(target: FuzzTarget, *, max_examples: int, folder: Path, extra: tuple[str, ...] = ()) -> FuzzResult:
    """`st run` with every check and up to `max_examples` cases per operation and phase; its report and calls."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = folder / "calls.jsonl"
    stats.unlink(missing_ok=True)
    env = {
        **os.environ,
        STATS_ENV: str(stats),
        # The hooks module is imported by name (tests.fuzz_hooks) from a process that runs in `folder`.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [
            "st", "--config-file", str(CONFIG), "run", f"{target.server.url}/openapi.json",
            "--max-examples", str(max_examples), "--header", f"Authorization: Bearer {target.key}",
            "--workers", "1", *extra,
        ],
        cwd=folder, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    calls = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
    return FuzzResult(done.returncode, done.stdout + done.stderr, calls)
