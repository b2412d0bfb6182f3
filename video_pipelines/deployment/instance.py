"""The Dagster instance: production config (PostgreSQL + Celery) and the embedded default (SQLite).

`dagster.yaml` at the repository root is rendered from `instance_config(postgres=True, celery=True)`
(a test keeps them equal); the embedded default has no `storage` section, so Dagster uses SQLite.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from video_pipelines.deployment.workers import BROKER_URL_ENV
from video_pipelines.errors import UsageError
from video_pipelines.executions.records import TENANT_TAG
from video_pipelines.net import redact_url
from video_pipelines.submissions.database_url import DATABASE_URL_ENV, DEFAULT_HOME

_GENERATED_MARK = "# Written by video-pipelines"
# Dagster's tables in the database of the submission store (see postgres.py).
POSTGRES_STORAGE: dict[str, Any] = {
    "custom": {
        "module": "video_pipelines.deployment.postgres",
        "class": "PostgresStorage",
        "config": {"postgres_url": {"env": DATABASE_URL_ENV}},
    }
}


def _run_monitoring(start_timeout: int, poll_interval: int, **more: int) -> dict[str, Any]:
    # Run monitoring fails runs whose worker died or never started, so executions cannot hang forever.
    return {
        "enabled": True,
        "start_timeout_seconds": start_timeout,
        "cancel_timeout_seconds": 180,
        **more,
        "poll_interval_seconds": poll_interval,
    }


_SETTINGS: dict[str, Any] = {
    # Queued runs, dequeued every second: the default 5 s interval adds seconds to every launch. A launch whose
    # code server did not answer in time (a loaded machine: 60 s) goes back to the queue, up to 3 times 10 s
    # apart, rather than failing its execution; Dagster re-queues it only if the run has not begun meanwhile.
    "run_queue": {
        "max_concurrent_runs": 4,
        "dequeue_interval_seconds": 1,
        "max_user_code_failure_retries": 3,
        "user_code_failure_retry_delay": 10,
    },
    "run_monitoring": _run_monitoring(180, 30),
    # Sensors in threads: the plan sensor long-polls for new submissions (see orchestration/sensors/plans.py)
    # and must not hold up the webhook sensors.
    "sensors": {"use_threads": True, "num_workers": 4},
    "telemetry": {"enabled": False},
}


TENANT_MAX_RUNS_ENV = "VIDEO_PIPELINES_TENANT_MAX_RUNS"


def tenant_limits(environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The run queue's per-tenant limit (runs one tenant holds at once), when $VIDEO_PIPELINES_TENANT_MAX_RUNS is set:
    one tenant's burst then leaves slots to the others. Dagster applies it to each value of the run's tenant tag."""
    value = ((os.environ if environ is None else environ).get(TENANT_MAX_RUNS_ENV) or "").strip()
    if not value:
        return []
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{TENANT_MAX_RUNS_ENV} must be a whole number of runs >= 1; got {value!r}")
    return [{"key": TENANT_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": int(value)}]


def instance_config(*, postgres: bool, celery: bool = False) -> dict[str, Any]:
    """The instance settings: with `postgres`, storage from the database URL; with `celery`, the warm workers."""
    config: dict[str, Any] = {}
    if postgres:
        config["storage"] = POSTGRES_STORAGE
    if celery:
        config["run_launcher"] = {
            "module": "video_pipelines.orchestration.workers.celery_launcher",
            "class": "VideoCeleryRunLauncher",
            # The result backend is $VIDEO_PIPELINES_RESULT_BACKEND, else the broker when it is Redis.
            "config": {"broker": {"env": BROKER_URL_ENV}},
        }
    config.update(_SETTINGS)
    if limits := tenant_limits():
        config["run_queue"] = {**config["run_queue"], "tag_concurrency_limits": limits}
    if celery:
        # With warm Celery workers runs wait QUEUED in Dagster's queue rather than STARTING in the broker, where
        # the start timeout counts: keep max_concurrent_runs near the workers' total concurrency. A dead worker's
        # run is failed within 2 polls + 2 pings (under 30 s measured, 60 s stated); its first miss is tolerated.
        config["run_monitoring"] = _run_monitoring(300, 10, max_resume_run_attempts=0)
        # A worker's run owns its process: its stdout and stderr go to the UI's files, without Dagster's two
        # mirroring processes per run (compute_logs.py). In-process runs (the demo) keep Dagster's mirror.
        config["compute_logs"] = {"module": "video_pipelines.deployment.compute_logs", "class": "FileComputeLogManager"}
    return config


def render_instance_yaml(*, postgres: bool, celery: bool = False) -> str:
    header = (
        "# The production Dagster instance of video_pipelines: PostgreSQL storage from\n"
        f"# ${DATABASE_URL_ENV} (a plain postgresql://user@host:port/db URL), queued runs,\n"
        "# run monitoring. Rendered from video_pipelines/deployment/instance.py; keep them equal.\n"
        "# PostgresStorage is dagster-postgres with the URL's driver pinned to psycopg2.\n"
        if postgres
        else f"{_GENERATED_MARK} (embedded default: SQLite in this folder). Safe to delete.\n"
    )
    if celery:
        header += (
            f"# Runs execute in warm `video-pipelines worker` processes, through the broker of ${BROKER_URL_ENV}\n"
            "# (redis://, amqp:// or sqs://); task states in $VIDEO_PIPELINES_RESULT_BACKEND\n"
            "# (default: the Redis broker).\n"
        )
    return header + yaml.safe_dump(instance_config(postgres=postgres, celery=celery), sort_keys=False)


def dagster_home_path() -> Path:
    """The instance folder the environment names, absolute: $DAGSTER_HOME, else `./.dagster_home` (not created)."""
    return Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()


def is_new_instance(home: Path) -> bool:
    """Whether preparing `home` would make a new, empty instance: with SQLite a missing folder is one; with
    $VIDEO_PIPELINES_DATABASE_URL the instance is the database's, wherever the folder."""
    return not home.is_dir() and not os.environ.get(DATABASE_URL_ENV)


def describe_instance(home: Path) -> str:
    """Where the instance of `home` is, for messages (its database redacted when one is set)."""
    database_url = os.environ.get(DATABASE_URL_ENV)
    database = f" (database {redact_url(database_url)})" if database_url else ""
    return f"the instance at {home}{database}"


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Make DAGSTER_HOME usable and export it; writes dagster.yaml unless the user wrote it (without our mark)."""
    chosen = home.resolve() if home is not None else dagster_home_path()
    chosen.mkdir(parents=True, exist_ok=True)
    config_file = chosen / "dagster.yaml"
    written = config_file.read_text() if config_file.exists() else None
    if written is None or written.startswith(_GENERATED_MARK):
        text = render_instance_yaml(
            postgres=bool(os.environ.get(DATABASE_URL_ENV)), celery=bool(os.environ.get(BROKER_URL_ENV))
        )
        if not text.startswith(_GENERATED_MARK):
            text = f"{_GENERATED_MARK} from the production settings.\n{text}"
        if text != written:  # every command prepares the folder: rewrite it only when the settings changed
            config_file.write_text(text)
    os.environ["DAGSTER_HOME"] = str(chosen)
    return chosen


def write_workspace(home: Path) -> Path:
    """A workspace file that loads the installed package, wherever the command runs."""
    workspace = home / "workspace.yaml"
    module = {"module_name": "video_pipelines.orchestration.definitions", "location_name": "video_pipelines"}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": module}]}))
    return workspace
