"""A run launched directly takes its deadline tag from its plan (the deadline itself is in e2e/test_deadlines.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .harness import run_plan_in_process


def test_a_run_launched_directly_gets_its_deadline_tag_from_its_plan_step(dagster_home: Path) -> None:
    plan = {"jobs": [{"id": "gen", "type": "generateVideo", "params": {"prompt": "p", "duration": 1}}]}
    with dg.DagsterInstance.get() as instance:
        timed = run_plan_in_process({**plan, "timeoutSeconds": 600}, instance)
        untimed = run_plan_in_process(plan, instance)
        assert timed.success and untimed.success
        assert instance.get_run_by_id(timed.run_id).tags["dagster/max_runtime"] == "600"  # type: ignore[union-attr]
        assert "dagster/max_runtime" not in instance.get_run_by_id(untimed.run_id).tags  # type: ignore[union-attr]
