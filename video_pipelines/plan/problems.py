"""Where a plan problem is: `"job3.params.transition: ..."` is node `job3`, field `params.transition`;
a location not starting with a node id (`plan.webhook.url`) is a plan field, kept whole."""

from __future__ import annotations

import re
from dataclasses import dataclass

from video_pipelines.errors import PlanValidationError
from video_pipelines.plan.document import NODE_ID_PATTERN
from video_pipelines.vocabulary import WireRecord

# A location is a path: ids, field names, `[index]` and dots, never a space.
_LOCATION = re.compile(r"[A-Za-z0-9_\-.\[\]]+")
_PLAN = "plan"


@dataclass(frozen=True)
class PlanProblem(WireRecord):
    """One problem of a plan: the node it is about (or None), the field, and what is wrong."""

    node: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        location = ".".join(part for part in (self.node, self.field) if part)
        return f"{location}: {self.message}" if location else self.message


def locate(problem: str) -> PlanProblem:
    """The node, field and message of one problem string (see the module docstring)."""
    location, separator, message = problem.partition(": ")
    if not separator or not _LOCATION.fullmatch(location):
        return PlanProblem(None, None, problem)
    head, _, rest = location.partition(".")
    if head != _PLAN and NODE_ID_PATTERN.fullmatch(head):
        return PlanProblem(head, rest or None, message)
    return PlanProblem(None, location, message)


def plan_problems(error: PlanValidationError) -> list[PlanProblem]:
    """Every problem of `error`, located, in its order."""
    return [locate(problem) for problem in error.problems]
