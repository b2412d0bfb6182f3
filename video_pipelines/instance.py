"""The Dagster instance: production config (PostgreSQL) and the embedded default (SQLite).

`dagster.yaml` at the repository root is the production instance; it is rendered from
`instance_config(postgres=True)` (a test keeps them equal). The embedded default used by
`video-pipelines demo` and `dev` has the same settings without the `storage` section, so
Dagster falls back to SQLite under DAGSTER_HOME.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DATABASE_URL_ENV = "VIDEO_PIPELINES_DATABASE_URL"
DEFAULT_HOME = ".dagster_home"
_GENERATED_MARK = "# Written by video-pipelines"

_SETTINGS: dict[str, Any] = {
    # Queued runs, dequeued every second: the default 5 s interval adds seconds to every launch.
    "run_queue": {"max_concurrent_runs": 4, "dequeue_interval_seconds": 1},
    # Run monitoring fails runs whose worker died or never started, so executions cannot hang forever.
    "run_monitoring": {
        "enabled": True,
        "start_timeout_seconds": 180,
        "cancel_timeout_seconds": 180,
        "poll_interval_seconds": 30,
    },
    # Sensors in threads: the plan sensor long-polls for new submissions (see orchestration/sensors.py)
    # and must not hold up the webhook sensors.
    "sensors": {"use_threads": True, "num_workers": 4},
    "telemetry": {"enabled": False},
}


def instance_config(*, postgres: bool) -> dict[str, Any]:
    """The instance settings; with `postgres`, storage comes from $VIDEO_PIPELINES_DATABASE_URL."""
    config: dict[str, Any] = {}
    if postgres:
        config["storage"] = {
            "custom": {
                "module": "video_pipelines.postgres",
                "class": "PostgresStorage",
                "config": {"postgres_url": {"env": DATABASE_URL_ENV}},
            }
        }
    config.update(_SETTINGS)
    return config


def render_instance_yaml(*, postgres: bool) -> str:
    header = (
        "# The production Dagster instance of video_pipelines: PostgreSQL storage from\n"
        f"# ${DATABASE_URL_ENV} (a plain postgresql://user@host:port/db URL), queued runs,\n"
        "# run monitoring. Rendered from video_pipelines/instance.py; keep them equal.\n"
        "# PostgresStorage is dagster-postgres with the URL's driver pinned to psycopg2.\n"
        if postgres
        else f"{_GENERATED_MARK} (embedded default: SQLite in this folder). Safe to delete.\n"
    )
    return header + yaml.safe_dump(instance_config(postgres=postgres), sort_keys=False)


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Make DAGSTER_HOME usable and export it: `.dagster_home` unless DAGSTER_HOME is set.

    Writes dagster.yaml there: PostgreSQL when $VIDEO_PIPELINES_DATABASE_URL is set, else
    SQLite. A dagster.yaml the user wrote (without our mark) is left as it is.
    """
    chosen = home or Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME)
    chosen = chosen.resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    config_file = chosen / "dagster.yaml"
    if not config_file.exists() or config_file.read_text().startswith(_GENERATED_MARK):
        text = render_instance_yaml(postgres=bool(os.environ.get(DATABASE_URL_ENV)))
        if not text.startswith(_GENERATED_MARK):
            text = f"{_GENERATED_MARK} from the production settings.\n{text}"
        config_file.write_text(text)
    os.environ["DAGSTER_HOME"] = str(chosen)
    return chosen


def write_workspace(home: Path) -> Path:
    """A workspace file that loads the installed package, wherever the command runs."""
    workspace = home / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "video_pipelines.orchestration.definitions",
                            "location_name": "video_pipelines",
                        }
                    }
                ]
            }
        )
    )
    return workspace
