"""A plan node's life in one place, plain Python (no Dagster import):

- `tasks` — what `plan` hands a node's step, and its task once its inputs exist;
- `runner` — one node run: inputs fetched, its operation's handler (`handlers/`, one module per
  operation), the media checks (`checks`), the result stored; `environment` — what it needs;
- `cache` — reuse across executions, computed once (single flight);
- `head_start` — remote nodes started ahead of their steps; `work` — a node's work in its run;
- `retries` — the retry loop; `ledger` — the provider job remembered on the run's tags.
"""
