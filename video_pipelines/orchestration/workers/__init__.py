"""The processes we run around Dagster: warm Celery run workers, their launcher and the daemon."""
