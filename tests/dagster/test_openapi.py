"""The API's OpenAPI document is one a client can be generated from, and it says what the server does.

The plan is a union of jobs discriminated on `type`, each job's `params` the very model that
validates them; every plan model refuses unknown fields; the event stream is `text/event-stream`
with each event's payload documented. Plans drawn from the document (with the rules no schema
says applied, tests/fuzz_hooks.py) pass the server's own validation; real events and example
plans match the document. No server or database here: tests/e2e/test_fuzz_api.py fuzzes a live one.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from video_pipelines.api.app import create_app
from video_pipelines.api.routes import status_changes
from video_pipelines.api.settings import ApiSettings
from video_pipelines.plan import parse_plan
from video_pipelines.plan.document import EXAMPLE
from video_pipelines.plan.limits import max_nodes
from video_pipelines.plan.params import PARAMS_MODELS
from video_pipelines.vocabulary import SUBSCRIBABLE_EVENTS, ExecutionState, NodeState

from ..fuzz_hooks import runnable
from .test_api import status_of

DOCUMENT_URI = "urn:video-pipelines:openapi"
REF = "#/components/schemas/"


@cache
def document() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(ApiSettings()).openapi()
    return openapi


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for the component `name`, its references resolved inside the document."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document(), default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator({"$ref": f"{DOCUMENT_URI}{REF}{name}"}, registry=registry)


def component(ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = document()["components"]["schemas"][ref.removeprefix(REF)]
    return schema


def test_the_plan_is_a_union_of_jobs_discriminated_on_type_with_the_validating_params() -> None:
    submit = document()["paths"]["/api/execute"]["post"]
    plan = component(submit["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert plan["additionalProperties"] is False and plan["required"] == ["jobs"]
    assert {"jobs", "baseExecutionId", "webhook", "priority", "maxCostUsd", "timeoutSeconds", "cache"} == set(
        plan["properties"]
    )
    jobs = plan["properties"]["jobs"]
    assert jobs["minItems"] == 1 and jobs["maxItems"] == max_nodes()
    union = jobs["items"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == {operation.value for operation in PARAMS_MODELS}
    for operation, model in PARAMS_MODELS.items():
        job = component(union["discriminator"]["mapping"][operation.value])
        assert job["additionalProperties"] is False and job["properties"]["type"]["const"] == operation.value
        assert REF + model.__name__ in json.dumps(job["properties"]["params"])
        params = component(model.__name__)
        assert params["additionalProperties"] is False and params["properties"], model
    assert component("GenerateVideoParams")["required"] == ["prompt"]
    assert component("GenerateVideoParams")["properties"]["duration"] == {
        "default": 5, "maximum": 60, "minimum": 1, "title": "Duration", "type": "number"
    }  # fmt: skip
    webhook = component("WebhookDocument")
    # secretEnv names a variable of the deployment: an operator's, not in the tenants' contract.
    assert webhook["additionalProperties"] is False and set(webhook["properties"]) == {"url", "secret", "events"}
    events = next(option for option in webhook["properties"]["events"]["anyOf"] if option.get("type") == "array")
    assert events["uniqueItems"] and events["items"]["enum"] == [event.value for event in SUBSCRIBABLE_EVENTS]


def test_operation_ids_are_the_route_names_a_generated_client_calls() -> None:
    ids = [operation["operationId"] for path in document()["paths"].values() for operation in path.values()]
    assert ids == [
        "submit", "status", "cancel", "retry", "events", "list_executions", "deliveries", "redeliver", "health", "metrics",
        "logs", "costs", "cost_suggestions", "retry_executions", "workers", "queue", "provider_webhook",
    ]  # fmt: skip


def test_the_event_stream_is_text_event_stream_with_each_payload_documented() -> None:
    answer = document()["paths"]["/api/execute/{execution_id}/events"]["get"]["responses"]["200"]
    assert set(answer["content"]) == {"text/event-stream"}
    kinds = {
        item["properties"]["event"]["const"]: item["properties"]["data"]["contentSchema"]["$ref"]
        for item in answer["content"]["text/event-stream"]["itemSchema"]["oneOf"]
    }
    assert kinds == {"status": REF + "StatusDocument", "node": REF + "NodeEvent", "execution": REF + "StatusDocument"}

    before = status_of(ExecutionState.PROCESSING, a=NodeState.RUNNING, b=NodeState.PENDING)
    after = status_of(ExecutionState.FAILED, a=NodeState.COMPLETED, b=NodeState.FAILED)
    events = status_changes(before, after)
    assert [event.kind for event in events] == ["node", "node", "execution"]
    for event in events:
        validator(kinds[event.kind].removeprefix(REF)).validate(event.data)


def test_the_operator_views_are_documented_with_their_models_and_errors() -> None:
    paths = document()["paths"]
    answer = paths["/api/execute/{execution_id}/logs"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"]["$ref"] == REF + "LogPage"
    events = {item["properties"]["event"]["const"] for item in answer["text/event-stream"]["itemSchema"]["oneOf"]}
    assert events == {"start", "log", "end"}
    assert set(component(REF + "LogLineDocument")["properties"]) == {"at", "level", "node", "message"}
    retry = paths["/api/executions/retry"]["post"]
    assert retry["requestBody"]["content"]["application/json"]["schema"]["$ref"] == REF + "BulkRetryRequest"
    assert component(REF + "BulkRetryRequest")["properties"]["limit"]["maximum"] == 100
    for path, method, model, errors in (
        ("/api/costs", "get", "CostReport", {"400", "401", "429"}),
        ("/api/executions/retry", "post", "BulkRetry", {"400", "401", "413", "429"}),
        ("/api/workers", "get", "Worker", {"401", "403", "429"}),
        ("/api/queue", "get", "QueueDocument", {"401", "403", "429"}),
    ):
        responses = paths[path][method]["responses"]
        assert REF + model in json.dumps(responses["200" if method == "get" else "202"]), path
        assert {code for code in responses if code.startswith(("4", "5"))} == errors, path
        assert all(set(responses[code]["content"]) == {"application/problem+json"} for code in errors)
    assert "since" in {parameter["name"] for parameter in paths["/api/executions"]["get"]["parameters"]}


def test_the_example_plans_match_the_document_and_pass_validation() -> None:
    validator("PlanDocument").validate(EXAMPLE)
    parse_plan(EXAMPLE)
    examples = [
        example for example in resources.files("video_pipelines.examples").iterdir() if example.name.endswith(".json")
    ]
    assert len(examples) >= 4
    for example in examples:
        plan = json.loads(example.read_text())
        validator("PlanDocument").validate(plan)
        parse_plan({"baseExecutionId": "exec_base", **plan})  # the variants name their base on the command line
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validator("PlanDocument").validate({**EXAMPLE, "prioirty": "high"})


PLANS = schemathesis.openapi.from_dict(document())["/api/execute"]["POST"].as_strategy()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case=PLANS)
def test_plans_drawn_from_the_document_pass_the_servers_validation(case: Any) -> None:
    plan = runnable(case.body)
    validator("PlanDocument").validate(plan)
    parse_plan(plan)
