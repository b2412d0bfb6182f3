"""A plan node's life in one place, plain Python (no Dagster import)."""
