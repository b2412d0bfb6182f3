"""Where the product runs: the Dagster instance, its PostgreSQL pool, the Celery workers' settings."""
