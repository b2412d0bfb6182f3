"""Dagster instance storage that accepts a plain `postgresql://user@host:port/db` URL.

`dagster.yaml` names `PostgresStorage`, which pins the URL's driver to psycopg2 (see
`video_pipelines.database_url`) before handing it to dagster-postgres.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from video_pipelines.database_url import psycopg2_url


class PostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage that accepts a plain `postgresql://user@host:port/db` URL."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> DagsterPostgresStorage:
        config = dict(config_value)
        if config.get("postgres_url"):
            config["postgres_url"] = psycopg2_url(str(config["postgres_url"]))
        return DagsterPostgresStorage.from_config_value(inst_data, config)  # type: ignore[arg-type]
