"""PostgreSQL URLs as users write them, made to work with the drivers Dagster uses.

SQLAlchemy 2.1 maps a plain `postgresql://` URL to psycopg 3, which dagster-postgres
neither brings nor supports (its per-connection `with conn:` closes a psycopg 3
connection). So every URL we hand to SQLAlchemy names psycopg2 explicitly, and the
instance storage in dagster.yaml goes through `PostgresStorage`, which does the same
for `$VIDEO_PIPELINES_DATABASE_URL`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

_PLAIN_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def psycopg2_url(url: str) -> str:
    """`url` with its scheme pinned to psycopg2; other schemes are returned as they are."""
    for scheme in _PLAIN_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url.removeprefix(scheme)
    return url


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
