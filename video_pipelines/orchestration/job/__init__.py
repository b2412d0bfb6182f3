"""The `execute_plan` job: its ops, executor, run config and traces."""
