"""The executor of `execute_plan`: in-process by default, multiprocess when run config asks for it.

Why in-process: a multiprocess step costs 0.7-1.8 s of process start-up (measured on 2 cores), and
x264's threads keep both cores busy already, so local nodes side by side buy nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.executor.base import Executor
from dagster._core.executor.init import InitExecutorContext


def _requirements(config: Mapping[str, object]) -> list[dg.ExecutorRequirement]:
    return list(multiple_process_executor_requirements()) if "multiprocess" in config else []


@dg.executor(
    name="in_process_or_multiprocess",
    config_schema=dg.Field(
        dg.Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG}),  # type: ignore[no-untyped-call]
        default_value={"in_process": {}},
    ),
    requirements=_requirements,
)
def in_process_or_multiprocess(init_context: InitExecutorContext) -> Executor:
    """In-process unless run config selects multiprocess."""
    config = init_context.executor_config
    if "multiprocess" in config:
        return _core_multiprocess_executor_creation(config["multiprocess"])  # type: ignore[arg-type]
    return _core_in_process_executor_creation(config["in_process"])  # type: ignore[arg-type]
