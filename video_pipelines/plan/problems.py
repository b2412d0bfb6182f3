"""Where a plan problem is: the node and the field each `PlanValidationError` problem names.

Every problem is written `"<location>: <message>"`, the location up to the first `": "`:
`job3.params.transition`, `job3`, `plan.webhook.url`, `plan`, `jobs[2].id`. A location that
starts with a node id (`[A-Za-z0-9_-]{1,64}`, never `plan`) names that node, the rest is the
field; any other location is a field of the plan as a whole, kept whole. So

    "job3.params.transition: must be one of ..."  -> node "job3", field "params.transition"
    "job3: unknown field 'x'"                     -> node "job3", field None
    "plan.webhook.url: must be an http(s) URL"    -> node None,   field "plan.webhook.url"

and `node.field: message` (the parts that are there) is the problem again, as `validate`
prints it. A problem without a location ("plan is not valid JSON: ...") has neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from video_pipelines.errors import PlanValidationError
from video_pipelines.plan.document import NODE_ID_PATTERN

# A location is a path: ids, field names, `[index]` and dots, never a space.
_LOCATION = re.compile(r"[A-Za-z0-9_\-.\[\]]+")
_PLAN = "plan"


@dataclass(frozen=True)
class PlanProblem:
    """One problem of a plan: the node it is about (or None), the field, and what is wrong."""

    node: str | None
    field: str | None
    message: str

    def to_wire(self) -> dict[str, str | None]:
        """`{"node", "field", "message"}`, one entry of the HTTP API's `errors`."""
        return {"node": self.node, "field": self.field, "message": self.message}

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
