"""The execution plan: parsing the wire format and validating it before any work starts."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from typing import Any

from pydantic import ValidationError

from video_pipelines.errors import PlanValidationError
from video_pipelines.plan.document import ENV_NAME_PATTERN, JOB_FIELDS, NODE_ID_PATTERN, PLAN_FIELDS, WEBHOOK_FIELDS
from video_pipelines.plan.limits import MAX_NODES_ENV, loads_bounded, max_nodes, value_problems
from video_pipelines.plan.params import VIDEO_INPUTS, AnyParams, Operation, parse_params
from video_pipelines.plan.refs import RESULT_FIELD_SAMPLES, find_references, with_results, with_samples
from video_pipelines.vocabulary import SUBSCRIBABLE_EVENTS, Priority, WebhookEvent

# The operations a remote provider may run (their `provider` param); every other one is FFmpeg here.
# addSubtitles: its speech-to-text, when it captions speech (`provider` goes only with `language`).
REMOTE_OPERATIONS = (Operation.GENERATE_VIDEO, Operation.LIP_SYNC, Operation.ADD_SUBTITLES)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str | None = field(default=None, repr=False)
    secret_env: str | None = None
    # Events sent besides the end's (always sent), in the order the plan lists them.
    events: tuple[WebhookEvent, ...] = ()


@dataclass(frozen=True)
class PlanNode:
    id: str
    operation: Operation
    params: dict[str, Any]  # as given, `{{refs}}` intact
    depends_on: tuple[str, ...] = ()
    # False: never reuse an earlier execution's result of the same lineage (a fresh take of a non-deterministic model).
    cache: bool = True

    @property
    def consumes_inputs(self) -> bool:
        """False for generateVideo, whose dependsOn entries only order it and feed `{{refs}}`."""
        return VIDEO_INPUTS[self.operation][1] != 0

    @property
    def is_remote(self) -> bool:
        """Whether the node waits on (and is billed by) a remote provider's job."""
        return self.operation in REMOTE_OPERATIONS and self.params.get("provider", "local") != "local"

    def typed_params(self, results: Mapping[str, Mapping[str, Any]]) -> AnyParams:
        """Params with references replaced by upstream results, validated for the operation."""
        return parse_params(self.operation, with_results(self.params, results))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "type": self.operation.value, "params": self.params}
        if self.depends_on:
            wire["dependsOn"] = list(self.depends_on)
        if not self.cache:
            wire["cache"] = False
        return wire


@dataclass(frozen=True)
class Plan:
    nodes: tuple[PlanNode, ...]
    base_execution_id: str | None = None
    webhook: Webhook | None = None
    priority: Priority = Priority.NORMAL
    max_cost_usd: float | None = None  # the spend cap, checked at admission and before each paid node
    timeout_seconds: int | None = None  # the whole execution's deadline (Dagster's `dagster/max_runtime`)
    cache: bool = True  # False: no node of this plan reuses an earlier execution's result by lineage

    def caches(self, node: PlanNode) -> bool:
        """Whether `node` may take an earlier execution's result of its lineage (neither it nor the plan opts out)."""
        return self.cache and node.cache

    @cached_property
    def by_id(self) -> dict[str, PlanNode]:
        return {node.id: node for node in self.nodes}

    def node(self, node_id: str) -> PlanNode:
        return self.by_id[node_id]

    def to_wire(self, *, include_secret: bool = False) -> dict[str, Any]:
        """The plan in the SDK's JSON form; the webhook secret only when asked for."""
        wire: dict[str, Any] = {"jobs": [node.to_wire() for node in self.nodes]}
        if self.base_execution_id:
            wire["baseExecutionId"] = self.base_execution_id
        if self.webhook:
            hook: dict[str, Any] = {"url": self.webhook.url}
            if self.webhook.secret_env:
                hook["secretEnv"] = self.webhook.secret_env
            if include_secret and self.webhook.secret:
                hook["secret"] = self.webhook.secret
            if self.webhook.events:
                hook["events"] = [event.value for event in self.webhook.events]
            wire["webhook"] = hook
        if self.priority is not Priority.NORMAL:
            wire["priority"] = self.priority.value
        if self.max_cost_usd is not None:
            wire["maxCostUsd"] = self.max_cost_usd
        if self.timeout_seconds is not None:
            wire["timeoutSeconds"] = self.timeout_seconds
        if not self.cache:
            wire["cache"] = False
        return wire


def load_plan_json(text: str | bytes) -> dict[str, Any]:
    """Decode a plan document; malformed JSON (or too deep, see `limits`) is a PlanValidationError that says where."""
    try:
        data = loads_bounded(text)
    except json.JSONDecodeError as exc:
        raise PlanValidationError(
            [f"plan is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    if not isinstance(data, dict):
        raise PlanValidationError([f"plan must be a JSON object with 'jobs', got {type(data).__name__}"])
    return data


def parse_plan(data: Mapping[str, Any], *, external_nodes: Collection[str] | None = None) -> Plan:
    """Validate a plan in wire form; `PlanValidationError` lists every problem by node and field.
    `external_nodes`: the base's node ids, None while unknown (the base resolves its dependencies)."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise PlanValidationError([f"plan must be a JSON object with 'jobs', got {type(data).__name__}"])
    for key in sorted(set(data) - PLAN_FIELDS, key=str):
        problems.append(f"plan: unknown field {key!r} (expected {', '.join(sorted(PLAN_FIELDS))})")
    jobs = data.get("jobs")
    if isinstance(jobs, list) and len(jobs) > (most := max_nodes()):
        problems.append(f"plan.jobs: {len(jobs)} jobs, more than the {most} a plan may have ({MAX_NODES_ENV})")
        raise PlanValidationError(problems)
    # Before anything reads a value: past these limits even showing one in a message could fail.
    beyond = _limit_problems(data)
    if beyond:
        raise PlanValidationError(problems + beyond)

    base_execution_id = data.get("baseExecutionId")
    if base_execution_id is not None and (not isinstance(base_execution_id, str) or not base_execution_id):
        problems.append("plan.baseExecutionId: must be a non-empty string")
        base_execution_id = None
    webhook = _parse_webhook(data.get("webhook"), problems)
    priority = _parse_priority(data.get("priority"), problems)
    max_cost_usd = _parse_max_cost(data.get("maxCostUsd"), problems)
    timeout_seconds = _parse_timeout(data.get("timeoutSeconds"), problems)
    cache = _parse_cache(data.get("cache"), "plan.cache", problems)

    if not isinstance(jobs, list):
        problems.append("plan.jobs: must be a list of jobs" if jobs is not None else "plan.jobs: missing")
        raise PlanValidationError(problems)
    if not jobs:
        problems.append("plan.jobs: the plan is empty; add at least one job")
        raise PlanValidationError(problems)

    nodes = _parse_nodes(jobs, problems)
    if problems:
        raise PlanValidationError(problems)

    plan = Plan(tuple(nodes), base_execution_id, webhook, priority, max_cost_usd, timeout_seconds, cache)
    _check_graph(plan, external_nodes)
    return plan


def _check_graph(plan: Plan, external_nodes: Collection[str] | None) -> None:
    """Its dependencies, then (only when they resolve) its cycles, then each node's inputs and params."""
    check_base_dependencies(plan, external_nodes)
    cycle = find_cycle(plan)
    if cycle:
        raise PlanValidationError([f"plan: dependency cycle {' -> '.join(cycle)}"])
    problems: list[str] = []
    for node in plan.nodes:
        _check_inputs(node, plan.base_execution_id is not None, problems)
        _check_params(plan, node, problems)
    if problems:
        raise PlanValidationError(problems)


def _limit_problems(data: Mapping[str, Any]) -> list[str]:
    """The `limits.value_problems` of each field of the plan and of its jobs, named as the other problems are."""
    fields: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key != "jobs" or not isinstance(value, list):
            fields.append((f"plan.{key}", value))
            continue
        for index, job in enumerate(value):
            if not isinstance(job, Mapping):
                fields.append((f"jobs[{index}]", job))
                continue
            node_id = job.get("id")
            where = node_id if isinstance(node_id, str) and NODE_ID_PATTERN.fullmatch(node_id) else f"jobs[{index}]"
            fields.extend((f"{where}.{name}", item) for name, item in job.items())
    return [problem for where, value in fields for problem in value_problems(value, where)]


def _parse_nodes(jobs: list[Any], problems: list[str]) -> list[PlanNode]:
    """The jobs that parse as nodes; the others, and duplicate ids, go to `problems`."""
    nodes = [node for index, raw in enumerate(jobs) if (node := _parse_node(index, raw, problems))]
    seen: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.id in seen:
            problems.append(f"{node.id}: duplicate id (jobs[{seen[node.id]}] and jobs[{index}])")
        seen.setdefault(node.id, index)
    return nodes


def check_base_dependencies(plan: Plan, external_nodes: Collection[str] | None) -> None:
    """Every dependsOn names a node of the plan, or of its base (all of them while the base's nodes are unknown,
    None; admission checks again once they are known)."""
    problems: list[str] = []
    base_execution_id = plan.base_execution_id
    for node in plan.nodes:
        for dep in node.depends_on:
            if dep in plan.by_id:
                continue
            if base_execution_id is not None and (external_nodes is None or dep in external_nodes):
                continue
            where = f" or in base {base_execution_id}" if base_execution_id is not None else ""
            problems.append(f"{node.id}.dependsOn: unknown dependency '{dep}' (no job with that id{where})")
    if problems:
        raise PlanValidationError(problems)


def _parse_webhook(raw: Any, problems: list[str]) -> Webhook | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append("plan.webhook: must be an object with 'url'")
        return None
    for key in sorted(set(raw) - set(WEBHOOK_FIELDS)):
        problems.append(f"plan.webhook: unknown field '{key}' (expected {', '.join(WEBHOOK_FIELDS)})")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append("plan.webhook.url: must be an http(s) URL")
        return None
    secret, secret_env = raw.get("secret"), raw.get("secretEnv")
    if secret is not None and (not isinstance(secret, str) or not secret):
        problems.append("plan.webhook.secret: must be a non-empty string")
    if secret_env is not None and (not isinstance(secret_env, str) or not ENV_NAME_PATTERN.fullmatch(secret_env)):
        problems.append("plan.webhook.secretEnv: must be the name of an environment variable")
    if secret is not None and secret_env is not None:
        problems.append("plan.webhook: give either 'secret' or 'secretEnv', not both")
    events = _parse_events(raw.get("events"), problems)
    return Webhook(url, secret if isinstance(secret, str) else None, secret_env, events)


def _parse_events(raw: Any, problems: list[str]) -> tuple[WebhookEvent, ...]:
    """`webhook.events`: the events to send besides the end's, each named once."""
    allowed = ", ".join(event.value for event in SUBSCRIBABLE_EVENTS)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"plan.webhook.events: must be a list of event names ({allowed})")
        return ()
    events: list[WebhookEvent] = []
    for name in raw:
        event = next((event for event in SUBSCRIBABLE_EVENTS if event.value == name), None)
        if event is None:
            hint = " (the end's event is always sent)" if name in (e.value for e in WebhookEvent) else ""
            problems.append(f"plan.webhook.events: unknown event {name!r}{hint}; expected one of {allowed}")
        elif event in events:
            problems.append(f"plan.webhook.events: {name!r} is listed twice")
        else:
            events.append(event)
    return tuple(events)


def _parse_priority(raw: Any, problems: list[str]) -> Priority:
    if raw is None:
        return Priority.NORMAL
    try:
        return Priority(raw)
    except ValueError:
        problems.append(f"plan.priority: must be one of high, normal, low (got {raw!r})")
        return Priority.NORMAL


def _parse_max_cost(raw: Any, problems: list[str]) -> float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw) and raw > 0:
        return float(raw)
    if raw is not None:
        problems.append(f"plan.maxCostUsd: must be a positive number of US dollars (got {raw!r})")
    return None


def _parse_timeout(raw: Any, problems: list[str]) -> int | None:
    # 2.0 from a JSON encoder that writes every number as a float is still a whole number of seconds.
    whole = isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
    if whole and not isinstance(raw, bool) and raw > 0:
        return int(raw)
    if raw is not None:
        problems.append(f"plan.timeoutSeconds: must be a positive whole number of seconds (got {raw!r})")
    return None


def _parse_node(index: int, raw: Any, problems: list[str]) -> PlanNode | None:
    where = f"jobs[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: each job must be an object, got {type(raw).__name__}")
        return None
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
        problems.append(
            f"{where}.id: {'missing' if node_id is None else repr(node_id) + ' is not a valid id'}"
            " (1-64 letters, digits, '_' or '-')"
        )
        return None
    for key in sorted(set(raw) - JOB_FIELDS, key=str):
        problems.append(f"{node_id}: unknown field {key!r}")

    type_name, operation_name = raw.get("type"), raw.get("operation")
    name = type_name if type_name is not None else operation_name
    if type_name is not None and operation_name is not None and type_name != operation_name:
        problems.append(f"{node_id}: 'type' ({type_name!r}) and 'operation' ({operation_name!r}) disagree")
    if name is None:
        problems.append(f"{node_id}.type: missing (one of {', '.join(op.value for op in Operation)})")
        return None
    operation = Operation.parse(name) if isinstance(name, str) else None
    if operation is None:
        problems.append(
            f"{node_id}.type: unknown operation {name!r} (expected one of {', '.join(op.value for op in Operation)})"
        )
        return None

    params = {} if raw.get("params") is None else raw["params"]
    if not isinstance(params, Mapping):
        problems.append(f"{node_id}.params: must be an object")
        return None

    depends_on = [] if raw.get("dependsOn") is None else raw["dependsOn"]
    if not isinstance(depends_on, list) or not all(isinstance(dep, str) for dep in depends_on):
        problems.append(f"{node_id}.dependsOn: must be a list of job ids")
        return None
    if len(set(depends_on)) != len(depends_on):
        problems.append(f"{node_id}.dependsOn: lists the same job twice")
    if node_id in depends_on:
        problems.append(f"{node_id}.dependsOn: a job cannot depend on itself (cycle {node_id} -> {node_id})")

    output = raw.get("output")
    if output is not None and output != f"${node_id}":
        problems.append(f"{node_id}.output: must be '${node_id}' (got {output!r})")
    cache = _parse_cache(raw.get("cache"), f"{node_id}.cache", problems)
    return PlanNode(node_id, operation, dict(params), tuple(depends_on), cache)


def _parse_cache(value: object, where: str, problems: list[str]) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        problems.append(f"{where}: must be true or false (false: compute it anew, never reuse an earlier result)")
        return True
    return value


def _check_inputs(node: PlanNode, has_base: bool, problems: list[str]) -> None:
    low, high = VIDEO_INPUTS[node.operation]
    count = len(node.depends_on)
    if not node.consumes_inputs or (count == 0 and has_base):
        return  # a variant's node without dependsOn takes the base execution's final output
    if count < low or (high is not None and count > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        problems.append(
            f"{node.id}.dependsOn: {node.operation.value} takes {wanted} input video"
            f"{'s' if wanted != 'exactly 1' else ''}, got {count}"
            + (" (or no dependsOn in a variant, to take the base's final video)" if count == 0 else "")
        )


def _check_params(plan: Plan, node: PlanNode, problems: list[str]) -> None:
    upstream = ancestors(plan, node.id)
    bad_refs = False
    for ref in find_references(node.params):
        if ref.node_id not in upstream:
            problems.append(
                f"{node.id}.params.{ref.path}: {ref.text} refers to '{ref.node_id}', "
                f"which is not upstream of {node.id} (add it to dependsOn)"
            )
            bad_refs = True
        elif ref.field not in RESULT_FIELD_SAMPLES:
            problems.append(
                f"{node.id}.params.{ref.path}: {ref.text} names an unknown field '{ref.field}' "
                f"(one of {', '.join(RESULT_FIELD_SAMPLES)})"
            )
            bad_refs = True
    if bad_refs:
        return
    try:
        parse_params(node.operation, with_samples(node.params))
    except ValidationError as exc:
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            field_path = f"{node.id}.params.{location}" if location else f"{node.id}.params"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown param for {node.operation.value}"
            elif error["type"] == "missing":
                message = f"required by {node.operation.value}"
            elif location and not isinstance(error.get("input"), dict | list):
                got = repr(error.get("input"))
                message = f"{message} (got {got if len(got) <= 60 else got[:57] + '...'})"
            problems.append(f"{field_path}: {message}")


def normalised_node_params(node: PlanNode) -> dict[str, Any]:
    """The node's params with defaults filled in and wire names, so `{}` and `{"transition": "cut"}` compare
    equal; referencing values are kept as written."""
    parsed = parse_params(node.operation, with_samples(node.params))
    typed = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return typed | {key: value for key, value in node.params.items() if next(find_references(value), None)}


def ancestors(plan: Plan, node_id: str) -> set[str]:
    """Every node `node_id` depends on, directly or not (including external ones)."""
    seen: set[str] = set()
    stack = list(plan.node(node_id).depends_on)
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in plan.by_id:
            stack.extend(plan.node(current).depends_on)
    return seen


def find_cycle(plan: Plan) -> list[str] | None:
    """A dependency cycle as a path that ends where it starts (in data-flow order), or None."""
    try:
        TopologicalSorter(_in_plan_dependencies(plan)).prepare()
    except CycleError as exc:
        return [str(node_id) for node_id in exc.args[1]]
    return None


def execution_order(plan: Plan) -> list[PlanNode]:
    """Nodes in an order where every node comes after its dependencies, plan order otherwise."""
    level = levels(plan)
    return sorted(plan.nodes, key=lambda node: level[node.id])  # sorted is stable: plan order otherwise


def levels(plan: Plan) -> dict[str, int]:
    """Each node's level: 0 without in-plan dependencies, else one more than its deepest dependency."""
    return dependency_levels(_in_plan_dependencies(plan))


def dependency_levels(graph: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """The level of each node of an acyclic `graph` (node -> its dependencies): 1 + its deepest dependency's."""
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    found: dict[str, int] = {}
    level = 0
    while sorter.is_active():
        ready = sorter.get_ready()
        found.update(dict.fromkeys(ready, level))
        sorter.done(*ready)
        level += 1
    return {node_id: found[node_id] for node_id in graph}


def _in_plan_dependencies(plan: Plan) -> dict[str, list[str]]:
    return {node.id: [dep for dep in node.depends_on if dep in plan.by_id] for node in plan.nodes}


def sinks(plan: Plan) -> list[PlanNode]:
    """Nodes nothing else in the plan depends on, in plan order; the last one is the final output."""
    used = {dep for node in plan.nodes for dep in node.depends_on}
    return [node for node in plan.nodes if node.id not in used]
