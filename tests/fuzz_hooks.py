"""Schemathesis hooks of the API fuzz (tests/e2e/test_fuzz_api.py, benchmarks/fuzz_api.py; tests/schemathesis.toml).

A plan generated from the OpenAPI schema is valid field by field; what no JSON Schema says is
left to `parse_plan`: dependencies that exist and come first, the number of inputs each
operation takes, `output` being `$` + the id, one subtitle source. `map_case` makes each
positive plan meet those rules too, and cheap (clips of at most 2 s, small frames, few jobs),
so that the server accepts it and it can really run. Negative cases are left as generated:
the server must refuse them.

`after_call` appends one JSON line per answered request to the file named by
$VIDEO_PIPELINES_FUZZ_STATS: the operation, the mode and the status code, and for an accepted
plan its executionId and body, so the test can count the 202s and run some of those plans.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.core.parameters import ParameterLocation

from video_pipelines.errors import MediaError
from video_pipelines.executions.destinations import literal_address
from video_pipelines.plan.document import NODE_ID_PATTERN
from video_pipelines.plan.params import VIDEO_INPUTS, Operation
from video_pipelines.speech import LOCAL_LANGUAGES
from video_pipelines.speech.srt import parse_srt

STATS_ENV = "VIDEO_PIPELINES_FUZZ_STATS"
SUBMIT = "POST /api/execute"
MAX_JOBS = 4
PUBLIC_URL = "https://media.example/fuzz"
VALID_SRT = "1\n00:00:00,000 --> 00:00:01,000\nfuzz\n"
_SOURCES = ("text", "cues", "srt")
_lock = threading.Lock()


def _positive(case: Case, location: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return True
    component = meta.components.get(location)
    return meta.generation.mode is GenerationMode.POSITIVE and (component is None or component.mode.is_positive)


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Case) -> Case:
    if case.operation.label != SUBMIT:
        return case
    if isinstance(case.body, dict) and _positive(case, ParameterLocation.BODY):
        case.body = runnable(case.body)
    headers = case.headers or {}
    if "Idempotency-Key" in headers and _positive(case, ParameterLocation.HEADER):
        # One key per generated plan: a key reused with another body is refused (SPEC section 8), and
        # Hypothesis draws short keys ("0") again and again.
        headers["Idempotency-Key"] = f"{str(headers['Idempotency-Key'])[:200]}-{uuid.uuid4().hex}"
    return case


@schemathesis.hook
def after_call(context: schemathesis.HookContext, case: Case, response: schemathesis.Response) -> None:
    path = os.environ.get(STATS_ENV)
    if not path:
        return
    line: dict[str, Any] = {
        "operation": case.operation.label,
        "mode": case.meta.generation.mode.value if case.meta is not None else None,
        "status": response.status_code,
    }
    if case.operation.label == SUBMIT and response.status_code == 202:
        line["executionId"] = response.json()["executionId"]
        line["plan"] = case.body
    elif (case.path_parameters or {}).get("execution_id"):
        # The stateful phase follows links: an accepted execution may then be canceled by the fuzz itself.
        line["target"] = case.path_parameters["execution_id"]
    with _lock, open(path, "a", encoding="utf-8") as stats:
        stats.write(json.dumps(line) + "\n")


def runnable(plan: dict[str, Any]) -> dict[str, Any]:
    """`plan` (valid for the schema) made valid for `parse_plan` and admission too, and cheap to run."""
    plan = _plain_text(plan)
    plan.pop("baseExecutionId", None)  # a base must exist and be this tenant's: not something to generate
    if isinstance(plan.get("webhook"), dict):
        plan["webhook"]["url"] = _public(plan["webhook"]["url"])
    jobs: list[dict[str, Any]] = plan["jobs"][:MAX_JOBS]
    if VIDEO_INPUTS[Operation(jobs[0]["type"])][0] > 0:
        jobs.insert(0, {"id": "source", "type": Operation.GENERATE_VIDEO.value, "params": {"prompt": "fuzz"}})
    seen: list[str] = []
    for index, job in enumerate(jobs):
        if job["id"] in seen:
            job["id"] = next(f"job{n}" for n in range(index, index + MAX_JOBS + 2) if f"job{n}" not in seen)
        assert NODE_ID_PATTERN.fullmatch(job["id"])
        operation = Operation(job["type"])
        job["dependsOn"] = _inputs(operation, job.get("dependsOn") or [], seen)
        if job.get("output") is not None:
            job["output"] = f"${job['id']}"
        job["params"] = _cheap(operation, job.get("params") or {})
        seen.append(job["id"])
    plan["jobs"] = jobs
    if plan.get("timeoutSeconds") is not None:
        plan["timeoutSeconds"] = min(plan["timeoutSeconds"], 10**6)  # a number of over 100 digits is refused
    if any(job["params"].get("provider", "local") != "local" for job in jobs):
        # A cap is refused, rightly, when the estimate passes it or a model has no price: keep caps to local plans.
        plan.pop("maxCostUsd", None)
    return plan


def _plain_text(value: Any) -> Any:
    """`value` with no NUL in its text (refused anywhere, SPEC section 8) and no `{{ref}}` (to a node that
    may not be upstream)."""
    if isinstance(value, str):
        return value.replace("\x00", "0").replace("{{", "{ {")
    if isinstance(value, dict):
        return {key: _plain_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_text(item) for item in value]
    return value


def _inputs(operation: Operation, given: list[str], earlier: list[str]) -> list[str]:
    """The given dependencies that name earlier jobs, as many as the operation takes."""
    known = [dep for dep in given if dep in earlier]
    low, high = VIDEO_INPUTS[operation]
    if high == 0:
        return known
    if len(known) < low:
        known = [earlier[-1]]
    return known if high is None else known[:high]


def _public(url: str) -> str:
    """A URL the submission check lets through: a literal private address is refused there, rightly."""
    return PUBLIC_URL if literal_address(url) is not None else url


def _cheap(operation: Operation, params: dict[str, Any]) -> dict[str, Any]:
    if operation is Operation.GENERATE_VIDEO:
        params["duration"] = min(params.get("duration", 1), 2)
        params["resolution"] = min(params.get("resolution", 64), 96)
    elif operation is Operation.MERGE:
        params["transitionDuration"] = min(params.get("transitionDuration", 0.5), 0.5)
    elif operation is Operation.LIP_SYNC:
        params["audioUrl"] = _public(params["audioUrl"])
    elif operation is Operation.ADD_SUBTITLES:
        _one_source(params)
    return params


def _one_source(params: dict[str, Any]) -> None:
    """addSubtitles: exactly one of text, cues, srt (or only `language`: captions of the speech), coherent."""
    given = [name for name in _SOURCES if params.get(name) is not None]
    for extra in given[1:]:
        del params[extra]
    if given:
        params.pop("provider", None)
        params.pop("model", None)
        params.pop("fallbacks", None)
    elif params.get("provider", "local") == "local" or any(
        entry.get("provider") == "local" for entry in params.get("fallbacks") or []
    ):
        params["language"] = sorted(LOCAL_LANGUAGES)[0]
    elif params.get("language") is None:
        params["language"] = "es"
    for cue in params.get("cues") or []:
        cue["start"] = min(cue["start"], 1.0)
        cue["end"] = cue["start"] + 0.5
    if params.get("srt") is not None and not _parses(params["srt"]):
        params["srt"] = VALID_SRT
    style = params.get("style") or {}
    if style.get("highlight") == "word":
        params["burn"] = True


def _parses(srt: str) -> bool:
    try:
        return bool(parse_srt(srt))
    except MediaError:
        return False
