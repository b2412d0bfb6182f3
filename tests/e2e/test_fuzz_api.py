"""Schemathesis against a live `video-pipelines serve` on PostgreSQL: every check, and plans that really run.

Plans are generated from the API's own OpenAPI document (tests/fuzz_hooks.py makes the positive
ones meet the rules no schema says, and cheap). Zero failures of any check, zero 5xx; most
schema-valid plans are accepted (202); then a real daemon runs a few of the accepted ones to
the end. The case count is bounded to keep this under two minutes; `python benchmarks/fuzz_api.py`
runs the long version. A failure prints Schemathesis' report, each failing case with its curl.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from video_pipelines.doors.api_client import ApiClient

from ..dagster.test_api import parse_stream
from ..dagster.test_openapi import validator
from ..fuzz import fuzz_target, run_fuzz

pytestmark = pytest.mark.postgres

MAX_EXAMPLES = 10
RUN = 2  # accepted plans a real daemon runs to the end
EVENT_PAYLOADS = {"status": "StatusDocument", "node": "NodeEvent", "execution": "StatusDocument"}
OFFLINE = {"generateVideo", "merge", "reframe", "addSubtitles"}


def runs_offline(plan: dict[str, Any]) -> bool:
    """Whether this machine renders `plan` end to end by itself: local providers, no audio URL to fetch,
    no speech to caption, no webhook to deliver, no deadline shorter than a slow CI's run."""
    jobs = plan["jobs"]
    return (
        not plan.get("webhook")
        and (plan.get("timeoutSeconds") or 600) >= 600
        and all(job["type"] in OFFLINE and job["params"].get("provider", "local") == "local" for job in jobs)
        and all(
            any(job["params"].get(source) is not None for source in ("text", "cues", "srt"))
            for job in jobs
            if job["type"] == "addSubtitles"
        )
    )


def test_schemathesis_finds_nothing_and_accepted_plans_run(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        started = time.monotonic()
        result = run_fuzz(target, max_examples=MAX_EXAMPLES, folder=tmp_path / "st")
        print(f"fuzz: {time.monotonic() - started:.0f} s")
        print(result.summary())
        assert result.passed, result.report
        assert result.server_errors == 0, result.report
        positive = [call for call in result.accepted if call["mode"] == "positive"]
        assert len(positive) > result.submitted / 2, result.statuses

        chosen = [call["executionId"] for call in positive if runs_offline(call["plan"])][:RUN]
        assert chosen, "no accepted plan runs offline"
        headers = {"Authorization": f"Bearer {target.key}"}
        with httpx.Client(base_url=target.server.url, headers=headers, timeout=60) as http:
            # Only the chosen ones should take the machine's time: cancel every other pending execution.
            cursor: str | None = None
            while True:
                params = {"status": "pending", "limit": 100, **({"cursor": cursor} if cursor else {})}
                page = http.get("/api/executions", params=params).json()
                for execution in page["executions"]:
                    if execution["executionId"] not in chosen:
                        assert http.post(f"/api/execute/{execution['executionId']}/cancel").status_code == 202
                cursor = page["nextCursor"]
                if cursor is None:
                    break

        started = time.monotonic()
        target.start_daemon()
        with httpx.Client(base_url=target.server.url, headers=headers, timeout=240) as http:
            # The first one's stream, from pending to its end: each event's data as the document says.
            stream = http.get(f"/api/execute/{chosen[0]}/events")
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = parse_stream(stream.content)
        assert {"status", "node", "execution"} <= {kind for kind, _ in events}, events
        for kind, data in events:
            validator(EVENT_PAYLOADS[kind]).validate(data)
        with ApiClient(target.server.url, target.key) as api:
            for execution_id in chosen:
                try:
                    status = api.wait(execution_id, timeout=240)
                except Exception:
                    print(target.deployment.log_tail())
                    raise
                assert status["status"] == "completed", status
                assert status["completedJobs"] == status["totalJobs"], status
        print(
            f"{len(chosen)} accepted plans ran to completion {time.monotonic() - started:.0f} s after the daemon started"
        )
