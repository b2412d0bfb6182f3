"""PostgreSQL URLs made to name psycopg2: SQLAlchemy 2.1 maps `postgresql://` to psycopg 3, which
dagster-postgres does not support (its `with conn:` closes a psycopg 3 connection)."""

from __future__ import annotations

# The database of the submission store and, in production, of Dagster's instance (see `deployment.instance`).
DATABASE_URL_ENV = "VIDEO_PIPELINES_DATABASE_URL"
# DAGSTER_HOME when it is not set: the instance folder, and the SQLite store's.
DEFAULT_HOME = ".dagster_home"
_PLAIN_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def psycopg2_url(url: str) -> str:
    """`url` with its scheme pinned to psycopg2; other schemes are returned as they are."""
    for scheme in _PLAIN_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url.removeprefix(scheme)
    return url
