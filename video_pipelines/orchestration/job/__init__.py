"""The `execute_plan` job: its ops, run config, executor, step outputs and traces."""
