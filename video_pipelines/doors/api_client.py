"""The HTTP API's client (imports neither Dagster nor the store). A request that never left is retried; one
safe to repeat (GETs, cancel, submit with its Idempotency-Key) also after a timeout or 429/5xx."""

from __future__ import annotations

import json as jsonlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx

from video_pipelines.doors import API_KEY_ENV as API_KEY_ENV
from video_pipelines.doors import API_URL_ENV as API_URL_ENV
from video_pipelines.errors import (
    IDEMPOTENCY_KEY_REUSED,
    ExecutionConflict,
    ExecutionNotFound,
    IdempotencyKeyReused,
    PlanValidationError,
    UsageError,
    VideoPipelineError,
)
from video_pipelines.net.retrying import backoff_delay, parse_retry_after
from video_pipelines.plan.overrides import NO_OPTIONS, SubmitOptions
from video_pipelines.plan.problems import PlanProblem
from video_pipelines.vocabulary import TERMINAL_STATES

T = TypeVar("T")

# Answers that say "not now" rather than "no": worth another try of a call that is safe to repeat.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
RETRY_AFTER_CAP = 30.0


class ApiClient:
    """A connection to `video-pipelines serve` with one API key (keep-alive: one client for many calls)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, timeout: float = 30.0) -> ApiClient | None:
        """The client of `VIDEO_PIPELINES_API_URL` with `VIDEO_PIPELINES_API_KEY`; None when no URL is set."""
        env = os.environ if environ is None else environ
        url = env.get(API_URL_ENV, "").strip()
        if not url:
            return None
        key = env.get(API_KEY_ENV, "").strip()
        if not key:
            raise UsageError(
                f"{API_URL_ENV} is set but {API_KEY_ENV} is not: set it to a key made with "
                "`video-pipelines api-keys create` (or unset the URL to use the local deployment)"
            )
        return cls(url, key, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(self, plan: Mapping[str, Any], options: SubmitOptions = NO_OPTIONS) -> str:
        """Submit a plan; returns its execution id. A key is made if none is given, so a retry finds the same one."""
        body = options.apply(plan)
        key = options.idempotency_key or f"client-{uuid.uuid4().hex}"
        answer = self._call("POST", "/api/execute", json=body, headers={"Idempotency-Key": key}, repeatable=True)
        execution_id = answer.get("executionId") if isinstance(answer, dict) else None
        if not isinstance(execution_id, str):
            raise VideoPipelineError(f"the API at {self.base_url} answered a submit without an executionId")
        return execution_id

    def status(self, execution_id: str) -> dict[str, Any]:
        return self._document("GET", f"{_execution_path(execution_id)}/status")

    def cancel(self, execution_id: str) -> dict[str, Any]:
        # Canceling twice is canceling once: safe to repeat.
        return self._document("POST", f"{_execution_path(execution_id)}/cancel")

    def retry(self, execution_id: str) -> dict[str, Any]:
        # A retry recorded and not launched yet is the one a second call finds: safe to repeat.
        return self._document("POST", f"{_execution_path(execution_id)}/retry")

    def deliveries(self, execution_id: str) -> list[dict[str, Any]]:
        answer = self._call("GET", f"{_execution_path(execution_id)}/deliveries", repeatable=True)
        if isinstance(answer, dict) and isinstance(answer.get("deliveries"), list):
            answer = answer["deliveries"]
        return self._checked(answer, list, "deliveries")

    def redeliver(self, execution_id: str, webhook_id: str) -> dict[str, Any]:
        path = f"{_execution_path(execution_id)}/deliveries/{quote(webhook_id, safe='')}/redeliver"
        # Not repeated after it may have reached the server: each redelivery is an attempt sent.
        return self._checked(self._call("POST", path, repeatable=False), dict, "a redelivery")

    def logs(self, execution_id: str, *, cursor: str | None = None, limit: int = 200) -> dict[str, Any]:
        """One page of the execution's log after `cursor`: `{"logs": [...], "cursor"}`."""
        query = _query(cursor=cursor, limit=limit)
        return self._document("GET", f"{_execution_path(execution_id)}/logs{query}")

    def follow_logs(self, execution_id: str, *, cursor: str | None = None) -> Iterator[dict[str, Any]]:
        """The execution's log lines as they are written, until it has ended and every line was read (the
        `?follow=true` stream, read as server-sent events; a dropped stream is resumed after its last line)."""
        while True:
            ended = False
            query = _query(cursor=cursor, follow="true")
            try:
                with self._http.stream("GET", f"{_execution_path(execution_id)}/logs{query}", timeout=None) as answer:
                    if not answer.is_success:
                        answer.read()
                        raise _error_of(answer, self.base_url)
                    for event, event_id, data in _server_sent_events(answer.iter_lines()):
                        if event == "end":
                            ended = True
                            break
                        if event == "log":
                            cursor = event_id or cursor
                            yield jsonlib.loads(data)
            except httpx.TransportError as exc:
                # Resumed after the last line read, as an EventSource reconnects with Last-Event-ID.
                if isinstance(exc, httpx.ConnectError):
                    raise VideoPipelineError(f"cannot reach the API at {self.base_url}: {_describe(exc)}") from None
                continue
            if ended:
                return

    def costs(self, *, group_by: str | None = None, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        """What the key's executions cost (an operator's key: every tenant's), grouped."""
        return self._document("GET", f"/api/costs{_query(groupBy=group_by, **{'from': start, 'to': end})}")

    def cost_suggestions(self, *, start: str | None = None, end: str | None = None) -> list[dict[str, Any]]:
        answer = self._call("GET", f"/api/costs/suggestions{_query(**{'from': start, 'to': end})}", repeatable=True)
        return self._checked(answer, list, "the cost suggestions")

    def retry_failed(self, *, since: str | None = None, limit: int = 100, status: str = "failed") -> dict[str, Any]:
        """Retry the key's failed executions since `since` (up to `limit`): `{"retried": [...], "skipped": [...]}`.
        Safe to repeat: an execution retried once is pending, so a second call does not retry it again."""
        body: dict[str, Any] = {"status": status, "limit": limit}
        if since is not None:
            body["since"] = since
        return self._checked(
            self._call("POST", "/api/executions/retry", json=body, repeatable=True), dict, "a bulk retry"
        )

    def wait(self, execution_id: str, *, timeout: float = 3600.0, poll: float = 0.5) -> dict[str, Any]:
        return poll_until_ended(lambda: self.status(execution_id), execution_id, timeout=timeout, poll=poll)

    def _document(self, method: str, path: str) -> dict[str, Any]:
        return self._checked(self._call(method, path, repeatable=True), dict, path)

    def _checked(self, answer: Any, kind: type[T], what: str) -> T:
        if not isinstance(answer, kind):
            raise VideoPipelineError(f"the API at {self.base_url} answered {what} with {type(answer).__name__}")
        return answer

    def _call(
        self, method: str, path: str, *, repeatable: bool, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._http.request(method, path, json=json, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left: repeating it cannot do anything twice.
                failure: BaseException = exc
            except httpx.TransportError as exc:
                if not repeatable:
                    raise VideoPipelineError(f"{method} {self.base_url}{path} failed: {_describe(exc)}") from None
                failure = exc
            else:
                if not repeatable or response.status_code not in RETRIED_STATUSES or attempt >= self.retries:
                    return self._answer(response)
                failure = VideoPipelineError(f"HTTP {response.status_code}")
                wait = parse_retry_after(response.headers.get("Retry-After"))
            if attempt >= self.retries:
                raise VideoPipelineError(
                    f"cannot reach the API at {self.base_url} ({method} {path}): {_describe(failure)} "
                    f"after {attempt + 1} attempts"
                ) from None
            time.sleep(min(wait, RETRY_AFTER_CAP) if wait is not None else backoff_delay(attempt, base=self.backoff))
            attempt += 1

    def _answer(self, response: httpx.Response) -> Any:
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise VideoPipelineError(
                    f"the API at {self.base_url} answered {response.request.url.path} with a body that is not JSON"
                ) from None
        raise _error_of(response, self.base_url)


def poll_until_ended(
    read_status: Callable[[], dict[str, Any]], execution_id: str, *, timeout: float, poll: float
) -> dict[str, Any]:
    """`read_status()` every `poll` seconds until its status is terminal (every door's `wait`)."""
    deadline = time.monotonic() + timeout
    while True:
        current = read_status()
        if current.get("status") in TERMINAL_STATES:
            return current
        if time.monotonic() > deadline:
            raise VideoPipelineError(
                f"{execution_id} did not finish within {timeout:.0f}s (status {current.get('status')})"
            )
        time.sleep(poll)


def _query(**values: object) -> str:
    """`?name=value&...` of the values that are not None ("" without any)."""
    given = {name: str(value) for name, value in values.items() if value is not None}
    return f"?{urlencode(given)}" if given else ""


def _server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) of each event of a text/event-stream (comments, such as keep-alives, skipped)."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = "message", None, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)


def _execution_path(execution_id: str) -> str:
    return f"/api/execute/{quote(execution_id, safe='')}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def plan_problems(errors: Any) -> list[str]:
    """A 422's `errors: [{node, field, message}]` as the problem strings `validate` prints (`node.field: message`)."""
    return [
        str(PlanProblem(str(error.get("node") or ""), str(error.get("field") or ""), str(error.get("message", ""))))
        for error in (errors if isinstance(errors, list) else [])
        if isinstance(error, dict)
    ]


def _error_of(response: httpx.Response, base_url: str) -> VideoPipelineError:
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = body if isinstance(body, dict) else {}
    code = response.status_code
    detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase or f"HTTP {code}")
    if code == 422 and problem.get("type") == IDEMPOTENCY_KEY_REUSED:
        return IdempotencyKeyReused(detail)
    if code == 422:
        return PlanValidationError(plan_problems(problem.get("errors")) or [f"plan: {detail}"])
    if code == 404:  # says where it looked, as the local path names its instance
        return ExecutionNotFound(f"{detail} at the API {base_url}")
    if code == 409:
        return ExecutionConflict(detail)
    if code in (401, 403):
        return UsageError(
            f"the API at {base_url} refused the request ({code}: {detail}): {API_KEY_ENV} is missing, revoked "
            "or not a key of this API; make one with `video-pipelines api-keys create --name NAME`"
        )
    if code < 500:
        return UsageError(f"the API at {base_url} refused the request ({code}): {detail}")
    return VideoPipelineError(f"the API at {base_url} failed ({code}): {detail}")
