"""Where the product runs: the Dagster instance (SQLite or PostgreSQL), its PostgreSQL pool, the Celery workers'
settings.
"""
