"""The thin Dagster shell: the execute_plan job, its resources and the Definitions."""
