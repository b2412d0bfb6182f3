"""The operator's views over the HTTP API, on a real Dagster instance and submission store: logs paged and
followed live, costs and suggestions on executions with known prices, the dead letters and their bulk retry,
and the workers and queue that only an operator's key sees.

Executions run as the daemon runs them: the plan sensor's evaluation, then each run request's run executed
in this process on the API's own instance. Following a live log needs a server that streams as it goes, so
that test talks to a real `video-pipelines serve` process on the same instance; the others use the app in
process (FastAPI's TestClient). The workers of a real broker are in e2e/test_workers.py.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from video_pipelines.doors import cli
from video_pipelines.doors.api_client import ApiClient
from video_pipelines.executions import execution_status
from video_pipelines.net.guard import parse_allowed_hosts
from video_pipelines.nodes.work import PARKING_ENV
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.sensors.plans import evaluate_submissions
from video_pipelines.submissions import ApiKeys
from video_pipelines.submissions.worker_beats import BEAT_STALE_SECONDS, WorkerBeat, WorkerBeats

from ..api_process import api_process
from ..conftest import VOICE, MediaServer
from ..unit.test_providers_replicate_fal import FakeReplicate
from .test_api import HOOK, PLAN, Api, ApiFactory, api, make_api, parse_stream, problem, submit
from .test_metrics import queue_a_run
from .test_retry import voiced_plan
from .test_spend_cap import generate, long_clip, replicate

__all__ = ["api", "long_clip", "make_api", "replicate"]  # fixtures used here

LEVELS = {"debug", "info", "warning", "error", "critical"}
LOOPBACK = parse_allowed_hosts("127.0.0.1")  # the voice track's server


def operator_key(api: Api) -> dict[str, str]:
    _, key = ApiKeys(api.store).create("operations", operator=True)
    return {"Authorization": f"Bearer {key}"}


def run_submitted(api: Api) -> list[dg.ExecuteInProcessResult]:
    """Launch what the plan sensor would (submissions, retries) and run each in this process."""
    instance = api.state.instance
    results = []
    for request in evaluate_submissions(api.store, instance).run_requests:
        tags = {**request.tags, "dagster/run_key": str(request.run_key)}
        results.append(
            execute_plan_job().execute_in_process(
                run_config=request.run_config, tags=tags, instance=instance, raise_on_error=False
            )
        )
    assert evaluate_submissions(api.store, instance).run_requests == []  # each marked launched
    return results


def status_of(api: Api, execution_id: str) -> str:
    return execution_status(api.state.records, api.store, execution_id).state.value


# --- logs --------------------------------------------------------------------------------------


def test_logs_page_through_every_line_with_its_node_and_only_to_their_tenant(api: Api) -> None:
    acme = api.key()
    execution_id = submit(api, acme, {**PLAN, "webhook": HOOK})
    [result] = run_submitted(api)
    assert result.success
    url = f"/api/execute/{execution_id}/logs"

    whole = api.client.get(url, headers=acme, params={"limit": 1000})
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/json"
    lines = whole.json()["logs"]
    assert len(lines) > 20 and whole.json()["cursor"].startswith(f"{result.run_id}.")
    assert all(set(line) == {"at", "level", "node", "message"} and line["level"] in LEVELS for line in lines)
    assert [line["at"] for line in lines] == sorted(line["at"] for line in lines)
    assert {line["node"] for line in lines} == {None, "job1", "job2", "job3"}
    assert any(line["node"] == "job3" and 'Started execution of step "node[job3]"' in line["message"] for line in lines)
    assert any(line["message"] == 'Finished execution of run for "execute_plan".' for line in lines)
    assert HOOK["secret"] not in whole.text and acme["Authorization"].split()[1] not in whole.text

    # Page by page (7 lines each), the same lines; after the last, an empty page that keeps the cursor.
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.client.get(url, headers=acme, params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        if not page["logs"]:
            assert page["cursor"] == cursor
            break
        assert len(page["logs"]) <= 7
        paged += page["logs"]
        cursor = page["cursor"]
    assert paged == lines

    # Followed after its end: every line, then the end of the stream.
    followed = api.client.get(url, headers=acme, params={"follow": "true", "limit": 50})
    assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/event-stream")
    events = parse_stream(followed.content)
    assert [data for kind, data in events if kind == "log"] == lines
    assert (events[0], events[-1][0]) == (("start", {"cursor": None}), "end")

    # Another tenant: 404, as for a missing id; an operator sees every tenant's.
    assert problem(api.client.get(url, headers=api.key("globex")), 404)["detail"] == f"no execution {execution_id}"
    assert api.client.get(url, headers=operator_key(api), params={"limit": 1000}).json()["logs"] == lines
    assert "cursor" in problem(api.client.get(url, headers=acme, params={"cursor": "not-a-run.12"}), 400)["detail"]
    another_run = f"{'0' * 8}-0000-0000-0000-{'0' * 12}.12"
    missing = problem(api.client.get(url, headers=acme, params={"cursor": another_run}), 404)
    assert missing["detail"] == f"no line of execution {execution_id}'s log has the cursor '{another_run}'"
    assert "limit" in problem(api.client.get(url, headers=acme, params={"limit": 0}), 400)["detail"]


def test_logs_are_followed_live_while_the_execution_runs(
    dagster_home: Path, make_api: ApiFactory, voice: MediaServer, tmp_path: Path
) -> None:
    """A line arrives while the execution still runs: its voice track answers 503 until the follower has seen
    a line of `gen`, so the execution cannot have ended before that line was streamed."""
    api = make_api(allowed_hosts=LOOPBACK)
    _, key = ApiKeys(api.store).create("follower", tenant="acme")
    execution_id = submit(api, {"Authorization": f"Bearer {key}"}, voiced_plan(voice.url(VOICE)))
    seen: list[dict[str, Any]] = []
    status_at_first_gen_line: list[str] = []
    failures: list[BaseException] = []
    env = {"DAGSTER_HOME": str(dagster_home), "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS": "0.2"}
    with api_process(env=env, logs=tmp_path / "logs") as server:

        def follow() -> None:
            try:
                with ApiClient(server.url, key) as http:
                    for line in http.follow_logs(execution_id):
                        seen.append(line)
                        if line["node"] == "gen" and not status_at_first_gen_line:
                            status_at_first_gen_line.append(status_of(api, execution_id))
                            voice.fail_next.pop(VOICE)  # the voice track is served from now on
            except BaseException as exc:
                failures.append(exc)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        [result] = run_submitted(api)
        follower.join(timeout=60)
        assert not follower.is_alive(), f"the stream did not end after the execution\n{server.log_tail()}"
        # The client's other calls over the same server: a page, costs (all local: free), a bulk retry (none failed).
        with ApiClient(server.url, key) as http:
            assert http.logs(execution_id, limit=1000)["logs"] == seen
            assert http.costs(group_by="operation")["groups"][0]["totalUsd"] == 0.0
            assert http.cost_suggestions() == []
            assert http.retry_failed(since="2026-01-01T00:00:00Z") == {"retried": [], "skipped": []}
    assert not failures, failures
    assert result.success and status_of(api, execution_id) == "completed"
    assert seen, "no line was streamed"
    assert status_at_first_gen_line == ["processing"]
    assert {"gen", "voice"} <= {line["node"] for line in seen}
    # The same lines a page reads, none twice, none missing.
    assert (
        seen
        == api.client.get(
            f"/api/execute/{execution_id}/logs", headers={"Authorization": f"Bearer {key}"}, params={"limit": 1000}
        ).json()["logs"]
    )


# --- costs -------------------------------------------------------------------------------------


def test_costs_and_suggestions_on_executions_with_known_prices(
    make_api: ApiFactory, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicate's kling at $1/s (the pricing file); the provider serves a 3 s clip whatever was asked: $3."""
    monkeypatch.setenv(PARKING_ENV, "off")  # each run waits for its prediction: one run per execution
    api = make_api(allowed_hosts=LOOPBACK)
    acme, globex, operator = api.key("acme"), api.key("globex"), operator_key(api)
    paid = {"jobs": [generate("gen", 1)]}
    first = submit(api, acme, paid)
    run_submitted(api)
    again = submit(api, acme, {**paid, "cache": False})  # computed again, the same clip: the same video
    run_submitted(api)
    reused = submit(api, acme, paid)  # reused: saves the list price of 1 s, $1
    run_submitted(api)
    theirs = submit(api, globex, {"jobs": [generate("gen", 1, prompt="another scene")]})
    run_submitted(api)
    assert [status_of(api, e) for e in (first, again, reused, theirs)] == ["completed"] * 4
    assert len(replicate.seen("create")) == 3

    report = api.client.get("/api/costs", headers=acme)
    assert report.status_code == 200, report.text
    assert report.json() == {
        "totalUsd": 6.0,
        "savedUsd": 1.0,
        "groupBy": "provider",
        "groups": [{"key": "replicate", "totalUsd": 6.0, "savedUsd": 1.0, "nodes": 3, "executions": 3}],
    }
    today = datetime.now(UTC).date().isoformat()
    by_day = api.client.get("/api/costs", headers=acme, params={"groupBy": "day"}).json()
    assert [(g["key"], g["totalUsd"]) for g in by_day["groups"]] == [(today, 6.0)]
    by_operation = api.client.get("/api/costs", headers=acme, params={"groupBy": "operation"}).json()
    assert [(g["key"], g["nodes"]) for g in by_operation["groups"]] == [("generateVideo", 3)]
    assert api.client.get("/api/costs", headers=operator).json()["totalUsd"] == 9.0  # every tenant's
    assert api.client.get("/api/costs", headers=globex).json()["totalUsd"] == 3.0
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert api.client.get("/api/costs", headers=acme, params={"from": tomorrow}).json()["totalUsd"] == 0
    assert api.client.get("/api/costs", headers=acme, params={"to": tomorrow}).json()["totalUsd"] == 6.0
    assert "groupBy" in problem(api.client.get("/api/costs", headers=acme, params={"groupBy": "tenant"}), 400)["detail"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    backwards = api.client.get("/api/costs", headers=acme, params={"from": tomorrow, "to": yesterday})
    assert backwards.json()["totalUsd"] == 0 and backwards.json()["groups"] == []  # an empty window
    assert "from" in problem(api.client.get("/api/costs", headers=acme, params={"from": "last week"}), 400)["detail"]

    suggested = api.client.get("/api/costs/suggestions", headers=acme)
    assert suggested.status_code == 200, suggested.text
    [recompute] = suggested.json()
    assert (recompute["kind"], recompute["estimatedSavingUsd"], recompute["executions"]) == (
        "identicalRecompute",
        3.0,
        [again],
    )
    # globex computed its one video once: nothing to suggest from its records, nor from acme's.
    assert api.client.get("/api/costs/suggestions", headers=globex).json() == []


# --- dead letters ------------------------------------------------------------------------------


def test_failed_executions_are_listed_and_retried_in_bulk(
    make_api: ApiFactory, voice: MediaServer, quick_retries: None
) -> None:
    api = make_api(allowed_hosts=LOOPBACK)
    acme, globex, operator = api.key("acme"), api.key("globex"), operator_key(api)
    before = datetime.now(UTC) - timedelta(seconds=1)
    plan = voiced_plan(voice.url(VOICE))
    older, newer = submit(api, acme, plan), submit(api, acme, {**plan, "priority": "low"})
    theirs = submit(api, globex, plan)
    fine = submit(api, acme, PLAN)
    run_submitted(api)
    assert [status_of(api, e) for e in (older, newer, theirs, fine)] == ["failed", "failed", "failed", "completed"]

    def failed(headers: dict[str, str], since: datetime) -> list[str]:
        answer = api.client.get("/api/executions", headers=headers, params={"status": "failed", "since": since})
        assert answer.status_code == 200, answer.text
        return [execution["executionId"] for execution in answer.json()["executions"]]

    assert failed(acme, before) == [newer, older]
    assert failed(acme, datetime.now(UTC) + timedelta(minutes=1)) == []
    assert failed(operator, before) == [theirs, newer, older]
    naive = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()  # read as UTC
    assert failed(acme, datetime.fromisoformat(naive)) == [newer, older]
    for since in ("12345", "yesterday", "2026-12-07"):  # a Unix time or a bare date is no date-time
        assert (
            "since" in problem(api.client.get("/api/executions", headers=acme, params={"since": since}), 400)["detail"]
        )

    one = api.client.post(
        "/api/executions/retry", headers=acme, json={"status": "failed", "since": str(before), "limit": 1}
    )
    assert one.status_code == 202, one.text
    assert one.json() == {"retried": [newer], "skipped": []}
    rest = api.client.post("/api/executions/retry", headers=acme, json={"since": str(before), "limit": 100.0})
    assert rest.json() == {"retried": [older], "skipped": []}  # newer is pending now: not retried twice
    assert api.client.post("/api/executions/retry", headers=acme, json={}).json() == {"retried": [], "skipped": []}
    assert [status_of(api, e) for e in (older, newer, theirs)] == ["pending", "pending", "failed"]

    for body, field in (({"limit": 101}, "limit"), ({"limit": "5"}, "limit"), ({"limit": 5.5}, "limit"), ({"status": "completed"}, "status"),
                        ({"since": "soon"}, "since"), ({"since": 1765000000}, "since"),
                        ({"since": "2026-12-07"}, "since"), ({"limit": 1, "tenant": "globex"}, "tenant")):  # fmt: skip
        assert field in problem(api.client.post("/api/executions/retry", headers=acme, json=body), 400)["detail"]
    assert (
        "not valid JSON" in problem(api.client.post("/api/executions/retry", headers=acme, content=b"{"), 400)["detail"]
    )

    voice.fail_next.pop(VOICE)  # the voice track is served from now on: the retries complete
    assert all(result.success for result in run_submitted(api))
    assert [status_of(api, e) for e in (older, newer, theirs)] == ["completed", "completed", "failed"]


# --- workers and queue -------------------------------------------------------------------------


def test_the_queue_and_workers_are_an_operators_and_refused_to_a_tenant(api: Api) -> None:
    acme, operator = api.key("acme"), operator_key(api)
    for path in ("/api/workers", "/api/queue"):
        refused = problem(api.client.get(path, headers=acme), 403)
        assert "--operator" in refused["detail"]
    submit(api, acme, PLAN)
    submit(api, api.key("globex"), PLAN)
    for priority in ("10", "0", "-10", "-3"):
        queue_a_run(api.state.instance, tags={"dagster/priority": priority})
    queue = api.client.get("/api/queue", headers=operator)
    assert queue.status_code == 200, queue.text
    assert queue.json() == {"pendingSubmissions": 2, "queuedRuns": {"high": 1, "normal": 1, "low": 2}}
    # This deployment launches runs in process, through no broker: no workers to list.
    assert api.client.get("/api/workers", headers=operator).json() == []


def test_workers_are_the_fresh_beats_in_the_deployments_database_with_their_runs(api: Api, tmp_path: Path) -> None:
    """On any broker (SQS too: no broker is asked), a worker is listed while its beat is fresh, with its runs."""
    launcher = {
        "module": "video_pipelines.orchestration.workers.celery_launcher",
        "class": "VideoCeleryRunLauncher",
        "config": {"broker": "sqs://", "backend": "redis://127.0.0.1:6379/0"},
    }
    beats = WorkerBeats(api.state.store)
    now = datetime.now(UTC)
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"run_launcher": launcher}) as instance:
        api.state.instance = instance
        queue_a_run(instance, tags={DAGSTER_CELERY_TASK_ID_TAG: "task-1"})
        [run] = instance.get_runs()
        beats.record(WorkerBeat("busy@host", ("dagster",), 2, ("task-1", "task-gone"), now))
        beats.record(WorkerBeat("idle@host", ("dagster", "other"), 1, (), now - timedelta(seconds=1)))
        beats.record(WorkerBeat("dead@host", ("dagster",), 1, (), now - timedelta(seconds=BEAT_STALE_SECONDS + 1)))
        answer = api.client.get("/api/workers", headers=operator_key(api))
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {
            "name": "busy@host",
            "concurrency": 2,
            "active": 2,
            "runs": [run.run_id],  # a task whose run is gone still counts as active, with no run to name
            "queues": ["dagster"],
            "lastSeen": now.isoformat(),
        },
        {
            "name": "idle@host",
            "concurrency": 1,
            "active": 0,
            "runs": [],
            "queues": ["dagster", "other"],
            "lastSeen": (now - timedelta(seconds=1)).isoformat(),
        },
    ]


# --- the CLI on the local deployment (as an operator) -------------------------------------------


def test_the_cli_reads_logs_and_costs_and_retries_in_bulk_locally(
    make_api: ApiFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VIDEO_PIPELINES_API_URL", "VIDEO_PIPELINES_API_KEY"):
        monkeypatch.delenv(name, raising=False)  # the CLI's calls go to the local deployment
    api = make_api()
    execution_id = submit(api, api.key("acme"))
    [result] = run_submitted(api)
    assert result.success
    capsys.readouterr()

    assert cli.main(["logs", execution_id, "--json", "--limit", "1000"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (
        printed
        == api.client.get(
            f"/api/execute/{execution_id}/logs", headers=operator_key(api), params={"limit": 1000}
        ).json()["logs"]
    )
    assert cli.main(["logs", execution_id, "--follow"]) == 0  # it has ended: every line, then the end
    text = capsys.readouterr().out.splitlines()
    assert len(text) == len(printed) and any(" job3 " in line and "INFO" in line for line in text)

    assert cli.main(["costs", "--group-by", "operation"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totalUsd"] == 0 and {group["key"] for group in report["groups"]} == {"generateVideo", "merge"}
    assert cli.main(["costs", "--suggestions", "--from", "1d"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert cli.main(["retry", "--failed-since", "6h"]) == 0
    assert json.loads(capsys.readouterr().out) == {"retried": [], "skipped": []}
    assert cli.main(["retry"]) == 2 and "retry --failed-since TIME" in capsys.readouterr().err
    assert cli.main(["retry", execution_id, "--failed-since", "6h"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["retry", "--failed-since", "last tuesday"]) == 2
    assert "'last tuesday' is not an ISO 8601 time" in capsys.readouterr().err
