"""The webhook core: signing vectors, the payload, and delivery through the outbox to a real HTTP receiver.

The outbox runs on real databases (a SQLite file and a fresh PostgreSQL database); every POST
goes over TCP to a `ThreadingHTTPServer` on 127.0.0.1 that records what it received.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError

from video_pipelines import executions
from video_pipelines.errors import ExecutionError, WebhookError, WebhookSecretError
from video_pipelines.executions import ExecutionStatus, webhook_payload
from video_pipelines.executions.notifications import secret_env_warning
from video_pipelines.net import AllowedHosts, parse_allowed_hosts
from video_pipelines.net.retrying import parse_retry_after
from video_pipelines.plan.overrides import SubmitOptions
from video_pipelines.submissions import SubmissionStore, schema
from video_pipelines.submissions.database_url import psycopg2_url
from video_pipelines.webhooks import (
    RETRY_DELAYS_ENV,
    AttemptOutcome,
    Delivery,
    DeliveryOutbox,
    DeliveryState,
    RetrySchedule,
    deliver_due,
    encode_payload,
    send_once,
    signature_headers,
    unsigned_headers,
)

from ..conftest import STORE_KEY, free_port
from .test_fetch import _issue_certificates

SECRET = "whk-secret-9d3f6a0c-never-stored"
LOOPBACK = parse_allowed_hosts("127.0.0.1")
NOW_RETRY = RetrySchedule(delays=(0.0, 0.0, 0.0, 0.0), jitter=0.0)
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# --- a real receiver --------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers from `answers`, then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        self.delay = 0.0
        self.port = 0
        self.sni: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def answer(self, *statuses: int, **headers: str) -> None:
        named = {name.replace("_", "-").title(): value for name, value in headers.items()}
        self.answers.extend(Answer(status, named) for status in statuses)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self._server is not None and isinstance(self._server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
                    answer = receiver.answers.pop(0) if receiver.answers else Answer(200)
                time.sleep(receiver.delay)
                self.send_response(answer.status)
                for name, value in {"Content-Length": "2", **answer.headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = _handle
            do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.handle_error = lambda *_: None  # refused TLS handshakes
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            # Handshake in the handler thread (on first read), not in the accept loop.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIDEO_PIPELINES_SECRET_KEY", "VIDEO_PIPELINES_DATABASE_URL", RETRY_DELAYS_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def outbox(store: SubmissionStore) -> DeliveryOutbox:
    return DeliveryOutbox(store)


def raw_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of `table`, read around the outbox, straight from the database."""
    engine = sa.create_engine(psycopg2_url(url))
    try:
        with engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}")).mappings()]
    finally:
        engine.dispose()


def payload_for(document: dict[str, Any]) -> dict[str, Any]:
    """The webhook payload of a status document, as the execution life cycle builds it."""
    return webhook_payload(ExecutionStatus.from_wire(document))


def status_doc(execution_id: str = "exec_01", status: str = "completed", **extra: Any) -> dict[str, Any]:
    video = {
        "url": "https://cdn.example.com/v.mp4",
        "duration": 6.0,
        "width": 1280,
        "height": 720,
        "aspectRatio": "16:9",
        "sizeBytes": 123456,
        "sha256": "ab" * 32,
        "status": "completed",
    }
    return {
        "executionId": execution_id,
        "status": status,
        "progress": 100,
        "totalJobs": 3,
        "completedJobs": 3 if status == "completed" else 1,
        "reusedJobs": 0,
        "currentJob": None,
        "result": video if status == "completed" else None,
        "error": None if status == "completed" else "job2: FFmpeg exited 1",
        "runId": "run-1",
        "jobs": {
            "job1": {"status": "completed", "result": video, "reusedFrom": None, "cost": 0.0},
            "job2": {"status": "completed" if status == "completed" else "failed", "result": None, "cost": 0.0},
            "job3": {"status": "completed" if status == "completed" else "skipped", "result": None, "cost": 0.0},
        },
        **extra,
    }


def enqueue(outbox: DeliveryOutbox, url: str, execution_id: str = "exec_01", **kwargs: Any) -> Delivery:
    body = encode_payload(payload_for(status_doc(execution_id)))
    values: dict[str, Any] = {"event": "completed", "secret_source": "env:HOOK_SECRET", **kwargs}
    return outbox.enqueue(execution_id=execution_id, url=url, body=body, **values)


def with_secret(_delivery: Delivery) -> str | None:
    return SECRET


def deliver(outbox: DeliveryOutbox, **kwargs: Any) -> list[tuple[Delivery, AttemptOutcome]]:
    values: dict[str, Any] = {"secret_for": with_secret, "allowed": LOOPBACK, "schedule": NOW_RETRY, **kwargs}
    return deliver_due(outbox, **values)


def assert_verified(request: Received, secret: str = SECRET) -> None:
    """Both signatures, checked the way receivers check them: the standardwebhooks library and plain hmac."""
    Webhook(secret.encode()).verify(request.body, request.headers)
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Webhook-Signature"], expected)
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    mac = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{mac}"


# --- signing ------------------------------------------------------------------------------


def test_signature_headers_fixed_vector_computed_by_hand() -> None:
    body = b'{"executionId":"exec_1","status":"completed"}'
    headers = signature_headers(body, "test-secret", webhook_id="msg_exec_1_completed", timestamp=1700000000)

    by_hand_hex = hmac.new(b"test-secret", body, hashlib.sha256).hexdigest()
    by_hand_v1 = base64.b64encode(
        hmac.new(b"test-secret", b"msg_exec_1_completed.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert headers == {
        "X-Webhook-Signature": by_hand_hex,
        "webhook-id": "msg_exec_1_completed",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1,{by_hand_v1}",
    }
    # The same values written down, so a change of algorithm cannot pass unnoticed.
    assert by_hand_hex == "9c1e1b4e93ebf1a968496eaa5fdcd649f9fe565482509220af13373f0b626e19"
    assert by_hand_v1 == "fDP2NAAoYIR/mBfNQd07kE8jwPpACEweMsMZV8qefFY="


def test_standard_webhooks_published_vector_for_a_whsec_secret() -> None:
    headers = signature_headers(
        b'{"test": 2432232314}',
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    # X-Webhook-Signature keys with the secret string as given, prefix included.
    expected = hmac.new(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", b'{"test": 2432232314}', hashlib.sha256)
    assert headers["X-Webhook-Signature"] == expected.hexdigest()


@pytest.mark.parametrize("secret", [SECRET, "ünïcødé secret ✓", "c2VjcmV0"])
def test_standard_webhooks_library_verifies_plain_secrets(secret: str) -> None:
    body = encode_payload({"executionId": "exec_é", "error": "ça a échoué", "n": 1})
    headers = signature_headers(body, secret, webhook_id="msg_x_failed", timestamp=int(time.time()))
    assert Webhook(secret.encode()).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret.encode()).verify(body + b" ", headers)


@pytest.mark.parametrize("unpadded", [False, True])
def test_standard_webhooks_library_verifies_whsec_secrets(unpadded: bool) -> None:
    encoded = base64.b64encode(b"\x00\x01 raw key bytes \xff").decode()  # 20 bytes: one '=' of padding
    secret = "whsec_" + (encoded.rstrip("=") if unpadded else encoded)
    body = b'{"executionId":"exec_2","status":"failed"}'
    headers = signature_headers(body, secret, webhook_id="msg_exec_2_failed", timestamp=int(time.time()))

    Webhook(secret).verify(body, headers)
    key = base64.b64decode(encoded)
    mac = hmac.new(key, f"msg_exec_2_failed.{headers['webhook-timestamp']}.".encode() + body, hashlib.sha256)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac.digest()).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret.encode()).verify(body, headers)  # the raw string is not the key of a whsec_ secret


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not-base64!", "whsec_abcde"])
def test_secrets_that_cannot_sign_are_refused_without_echoing_them(secret: str) -> None:
    with pytest.raises(WebhookSecretError) as caught:
        signature_headers(b"{}", secret, webhook_id="msg_1", timestamp=1)
    if secret.removeprefix("whsec_"):
        assert secret.removeprefix("whsec_") not in str(caught.value)


def test_unsigned_headers_and_non_utf8_bodies() -> None:
    assert unsigned_headers("msg_1", 1700000000) == {"webhook-id": "msg_1", "webhook-timestamp": "1700000000"}
    with pytest.raises(WebhookError, match="UTF-8"):
        signature_headers(b"\xff\xfe", SECRET, webhook_id="msg_1", timestamp=1)


# --- payload ------------------------------------------------------------------------------


def test_payload_of_a_completed_execution_has_the_video_and_no_error() -> None:
    payload = payload_for(status_doc("exec_9"))
    assert payload == {
        "executionId": "exec_9",
        "status": "completed",
        "video": {
            "url": "https://cdn.example.com/v.mp4",
            "duration": 6.0,
            "aspectRatio": "16:9",
            "width": 1280,
            "height": 720,
            "status": "completed",
        },
        "error": None,
        "completedJobs": 3,
        "totalJobs": 3,
        "cost": {"totalUsd": 0.0, "jobs": {"job1": 0.0, "job2": 0.0, "job3": 0.0}},
        "savedUsd": 0.0,
    }
    body = encode_payload(payload)
    assert body == encode_payload(payload_for(status_doc("exec_9")))
    assert b" " not in body.replace(b"https", b"") and json.loads(body) == payload
    assert body.startswith(b'{"executionId":"exec_9","status":"completed","video":{"url":')
    # As JSON.stringify writes it, so a receiver that re-serializes the parsed body signs these bytes.
    assert b'"duration":6,' in body and b'"totalUsd":0,' in body
    assert encode_payload({"error": "échec ✗"}) == '{"error":"échec ✗"}'.encode()


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("failed", "job2: FFmpeg exited 1", "job2: FFmpeg exited 1"),
        ("failed", None, "the execution failed"),
        ("canceled", None, "the execution was canceled"),
    ],
)
def test_payload_of_an_execution_that_did_not_complete(status: str, error: str | None, expected: str) -> None:
    payload = payload_for(status_doc("exec_3", status, error=error))
    assert payload["status"] == status and payload["video"] is None and payload["error"] == expected
    assert payload["completedJobs"] == 1 and payload["totalJobs"] == 3


def test_payload_is_refused_before_the_end_and_for_a_broken_result() -> None:
    with pytest.raises(WebhookError, match="exec_4 is 'processing'"):
        payload_for(status_doc("exec_4", "processing"))
    with pytest.raises(ExecutionError, match="url"):
        payload_for(status_doc("exec_5", result={"duration": 1, "width": 2, "height": 2, "aspectRatio": "1:1"}))
    assert json.loads(encode_payload({"error": "échec \u2713"})) == {"error": "échec ✓"}


# --- retry schedule and Retry-After -------------------------------------------------------


def test_default_schedule_is_seven_attempts_over_hours_with_jitter() -> None:
    schedule = RetrySchedule()
    assert schedule.max_attempts == 7
    assert schedule.delays == (5, 30, 120, 600, 1800, 7200)
    for attempt, nominal in enumerate(schedule.delays, start=1):
        for _ in range(50):
            delay = schedule.delay_after(attempt)
            assert delay is not None and nominal * 0.8 <= delay <= nominal * 1.2
    assert schedule.delay_after(7) is None
    assert len({schedule.delay_after(1) for _ in range(20)}) > 1


def test_schedule_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetrySchedule.from_env() == RetrySchedule()
    monkeypatch.setenv(RETRY_DELAYS_ENV, "1, 1,1,1")
    assert RetrySchedule.from_env().delays == (1, 1, 1, 1) and RetrySchedule.from_env().max_attempts == 5
    for bad in ("1,,2", "soon", "-1", "nan"):
        with pytest.raises(WebhookError, match="seconds"):
            RetrySchedule.from_env({RETRY_DELAYS_ENV: bad})


def test_parse_retry_after() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0
    for unreadable in (None, "", "soon", "-5", "inf"):
        assert parse_retry_after(unreadable) is None


# --- the outbox on real databases -----------------------------------------------------------


def test_enqueue_is_idempotent_per_execution_and_event(outbox: DeliveryOutbox, db_url: str) -> None:
    first = enqueue(outbox, "https://hooks.example.com/a")
    again = enqueue(outbox, "https://other.example.com/b", secret_source=None)
    assert again == first
    assert first.webhook_id == "msg_exec_01_completed" and first.state is DeliveryState.PENDING
    assert first.body == encode_payload(payload_for(status_doc("exec_01")))

    racing = [threading.Thread(target=enqueue, args=(outbox, "https://x.example.com", "exec_02")) for _ in range(6)]
    for thread in racing:
        thread.start()
    for thread in racing:
        thread.join()
    rows = raw_rows(db_url, "video_pipelines_webhook_deliveries")
    assert Counter(row["execution_id"] for row in rows) == {"exec_01": 1, "exec_02": 1}
    assert [d.webhook_id for d in outbox.deliveries("exec_01")] == ["msg_exec_01_completed"]

    other_event = outbox.enqueue(
        execution_id="exec_01", event="failed", url="https://a.example.com", body=b"{}", secret_source=None
    )
    assert other_event.webhook_id == "msg_exec_01_failed" and len(outbox.deliveries("exec_01")) == 2


def test_enqueue_refuses_what_it_cannot_keep(outbox: DeliveryOutbox) -> None:
    with pytest.raises(WebhookError, match="completed, failed, canceled"):
        enqueue(outbox, "https://a.example.com", event="started")
    with pytest.raises(WebhookError, match="never the secret itself") as caught:
        enqueue(outbox, "https://a.example.com", secret_source=SECRET)
    assert SECRET not in str(caught.value)
    with pytest.raises(WebhookError, match="UTF-8"):
        outbox.enqueue(execution_id="e", event="failed", url="https://a.example.com", body=b"\xff", secret_source=None)


def test_500_then_503_then_200_is_three_attempts_of_one_webhook_and_then_nothing(
    outbox: DeliveryOutbox, receiver: Receiver, db_url: str
) -> None:
    receiver.answer(500, 503)
    delivery = enqueue(outbox, receiver.url())

    outcomes = [deliver(outbox) for _ in range(3)]
    assert [[outcome.status_code for _, outcome in made] for made in outcomes] == [[500], [503], [200]]
    assert [made[0][0].state for made in outcomes] == [DeliveryState.PENDING, DeliveryState.PENDING, "delivered"]
    assert deliver(outbox) == [] and deliver(outbox, now=datetime.now(UTC) + timedelta(days=1)) == []

    assert len(receiver.requests) == 3
    assert {request.webhook_id for request in receiver.requests} == {delivery.webhook_id}
    for request in receiver.requests:
        assert request.method == "POST" and request.path == "/hook"
        assert request.headers["Content-Type"] == "application/json"
        assert request.body == delivery.body
        assert_verified(request)

    final = outbox.get(delivery.webhook_id)
    assert final is not None and final.state is DeliveryState.DELIVERED and final.attempts == 3
    assert final.delivered_at is not None and final.last_error is None and final.lease_until is None
    attempts = outbox.attempts(delivery.webhook_id)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert all(a.finished_at >= a.started_at and a.duration_ms >= 0 for a in attempts)
    assert len(raw_rows(db_url, "video_pipelines_webhook_attempts")) == 3


def test_410_gone_stops_at_once(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    receiver.answer(410)
    delivery = enqueue(outbox, receiver.url())
    [(after, outcome)] = deliver(outbox)
    assert outcome.status_code == 410
    assert after.state is DeliveryState.FAILED and after.last_error == "receiver answered 410 Gone"
    assert deliver(outbox, now=datetime.now(UTC) + timedelta(days=1)) == []
    assert len(receiver.requests) == 1 and len(outbox.attempts(delivery.webhook_id)) == 1


def test_retry_after_pushes_the_next_attempt_out(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    receiver.answer(503, retry_after="120")
    receiver.answer(429, retry_after="86400")
    delivery = enqueue(outbox, receiver.url(), now=T0)

    [(after, outcome)] = deliver(outbox, now=T0)
    assert outcome.retry_after == 120
    assert after.state is DeliveryState.PENDING and after.next_attempt_at == T0 + timedelta(seconds=120)
    assert deliver(outbox, now=T0 + timedelta(seconds=119)) == [], "not due yet: left for a later call"

    later = T0 + timedelta(seconds=120)
    [(after, outcome)] = deliver(outbox, now=later)
    assert outcome.status_code == 429 and after.next_attempt_at == later + timedelta(hours=1), "capped at 1 h"

    [(after, outcome)] = deliver(outbox, now=later + timedelta(hours=1))
    assert outcome.acknowledged and after.state is DeliveryState.DELIVERED
    assert [request.webhook_id for request in receiver.requests] == [delivery.webhook_id] * 3


def test_schedule_delays_and_giving_up_after_max_attempts(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    receiver.answer(500, 500, 500, 500)
    delivery = enqueue(outbox, receiver.url(), now=T0)
    schedule = RetrySchedule(delays=(30.0, 60.0), jitter=0.0)

    [(after, _)] = deliver(outbox, schedule=schedule, now=T0)
    assert after.next_attempt_at == T0 + timedelta(seconds=30) and after.last_error == "HTTP 500"
    assert deliver(outbox, schedule=schedule, now=T0 + timedelta(seconds=29)) == []
    [(after, _)] = deliver(outbox, schedule=schedule, now=T0 + timedelta(seconds=30))
    assert after.next_attempt_at == T0 + timedelta(seconds=90)
    [(after, _)] = deliver(outbox, schedule=schedule, now=T0 + timedelta(seconds=90))

    assert after.state is DeliveryState.FAILED and after.attempts == 3 == schedule.max_attempts
    assert after.last_error == "gave up after 3 attempts; the last: HTTP 500"
    assert deliver(outbox, schedule=schedule, now=T0 + timedelta(days=1)) == []
    assert len(receiver.requests) == 3 and {r.webhook_id for r in receiver.requests} == {delivery.webhook_id}


def test_receiver_down_then_back_after_a_restart_is_delivered_once(db_url: str) -> None:
    port = free_port()
    with SubmissionStore(db_url, secret_key=STORE_KEY) as store:
        outbox = DeliveryOutbox(store)
        delivery = enqueue(outbox, f"http://127.0.0.1:{port}/hook?token=query-token-123")
        [(after, outcome)] = deliver(outbox)
        assert outcome.status_code is None and outcome.error is not None
        assert "ConnectError" in outcome.error and f"127.0.0.1:{port}/hook" in outcome.error
        assert "query-token-123" not in outcome.error
        assert after.state is DeliveryState.PENDING and after.attempts == 1 and after.lease_until is None

    back = Receiver()
    back.start(port)
    try:
        with SubmissionStore(db_url, secret_key=STORE_KEY) as reopened:
            outbox = DeliveryOutbox(reopened)
            [(after, outcome)] = deliver(outbox)
            assert outcome.acknowledged and after.state is DeliveryState.DELIVERED and after.attempts == 2
            assert deliver(outbox) == []
        with SubmissionStore(db_url, secret_key=STORE_KEY) as again:
            assert deliver(DeliveryOutbox(again), now=datetime.now(UTC) + timedelta(days=1)) == []
            errors = [a.error for a in DeliveryOutbox(again).attempts(delivery.webhook_id)]
    finally:
        back.stop()
    assert len(back.requests) == 1 and back.requests[0].path == "/hook?token=query-token-123"
    assert_verified(back.requests[0])
    assert errors[0] is not None and errors[1] is None


def test_two_senders_at_once_never_send_a_delivery_twice(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    receiver.delay = 0.02
    ids = {enqueue(outbox, receiver.url(), f"exec_{n:02d}").webhook_id for n in range(12)}
    barrier = threading.Barrier(2)
    results: list[list[tuple[Delivery, AttemptOutcome]]] = []

    def sender() -> None:
        barrier.wait()
        results.append(deliver(outbox))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sent = Counter(request.webhook_id for request in receiver.requests)
    assert sent == dict.fromkeys(ids, 1)
    assert sorted(d.webhook_id for made in results for d, _ in made) == sorted(ids)
    assert all(made for made in results), "both senders shared the work"
    assert deliver(outbox) == []


def test_claims_are_leases(outbox: DeliveryOutbox) -> None:
    enqueue(outbox, "https://hooks.example.com/a", now=T0)
    [claimed] = outbox.claim_due(now=T0, lease_seconds=60)
    assert claimed.lease_until == T0 + timedelta(seconds=60)
    assert outbox.claim_due(now=T0 + timedelta(seconds=59)) == []
    [reclaimed] = outbox.claim_due(now=T0 + timedelta(seconds=60))  # a sender that died: its lease expired
    assert reclaimed.webhook_id == claimed.webhook_id
    outbox.record_attempt(
        reclaimed, AttemptOutcome(status_code=204), schedule=NOW_RETRY, now=T0 + timedelta(seconds=61)
    )
    assert outbox.claim_due(now=T0 + timedelta(days=1)) == [], "a delivered record is never claimed again"

    # The first sender, late, records its own attempt: recorded, but the delivery stays delivered.
    late = outbox.record_attempt(
        claimed, AttemptOutcome(status_code=500), schedule=NOW_RETRY, now=T0 + timedelta(seconds=62)
    )
    assert late.state is DeliveryState.DELIVERED and late.attempts == 2


def test_ssrf_loopback_refused_without_any_request(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    delivery = enqueue(outbox, receiver.url())
    [(after, outcome)] = deliver(outbox, allowed=AllowedHosts())
    assert outcome.refused and outcome.status_code is None
    assert (
        outcome.error is not None and "loopback" in outcome.error and "VIDEO_PIPELINES_ALLOWED_HOSTS" in outcome.error
    )
    assert after.state is DeliveryState.FAILED and after.last_error == outcome.error
    assert receiver.requests == []
    assert deliver(outbox, now=datetime.now(UTC) + timedelta(days=1)) == []
    assert [a.error for a in outbox.attempts(delivery.webhook_id)] == [outcome.error]


def test_redirects_are_not_followed(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    receiver.answer(302, location=receiver.url("/elsewhere"))
    enqueue(outbox, receiver.url())
    [(after, outcome)] = deliver(outbox)
    assert outcome.status_code == 302 and not outcome.acknowledged
    assert outcome.error is not None and "do not follow redirects" in outcome.error
    assert after.state is DeliveryState.PENDING and after.attempts == 1
    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/hook")]
    deliver(outbox)
    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/hook")] * 2


def test_a_secret_lookup_that_breaks_is_retried_and_never_an_unsigned_send(
    outbox: DeliveryOutbox, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery = enqueue(outbox, receiver.url(), secret_source="env:HOOK_SECRET")

    def from_env(d: Delivery) -> str | None:
        assert d.secret_source == "env:HOOK_SECRET"
        return os.environ["HOOK_SECRET"]

    # Not a configuration error the sender knows (a database that did not answer, say): may pass.
    [(after, outcome)] = deliver(outbox, secret_for=from_env)
    assert outcome.error is not None and "the webhook secret could not be read (env:HOOK_SECRET)" in outcome.error
    assert not outcome.permanent and after.state is DeliveryState.PENDING and receiver.requests == []

    monkeypatch.setenv("HOOK_SECRET", SECRET)
    [(after, outcome)] = deliver(outbox, secret_for=from_env)
    assert outcome.acknowledged and after.state is DeliveryState.DELIVERED and after.attempts == 2
    assert len(receiver.requests) == 1 and receiver.requests[0].webhook_id == delivery.webhook_id
    assert_verified(receiver.requests[0])


def _unset(name: str) -> str | None:
    raise WebhookSecretError(f"environment variable {name} (secretEnv) is not set where webhooks are sent")


@pytest.mark.parametrize(
    ("secret_for", "expected"),
    [
        (lambda _: _unset("HOOK_SECRET"), "could not be read (env:HOOK_SECRET): environment variable HOOK_SECRET"),
        (lambda _: None, "could not be read (env:HOOK_SECRET): there is none"),
        (lambda _: "whsec_zz!!qq", "the webhook cannot be signed"),
    ],
    ids=["secret-env-unset", "no-secret", "secret-that-cannot-sign"],
)
def test_a_configuration_error_fails_the_delivery_at_once_and_is_never_retried(
    outbox: DeliveryOutbox, receiver: Receiver, secret_for: Any, expected: str
) -> None:
    delivery = enqueue(outbox, receiver.url(), secret_source="env:HOOK_SECRET")
    [(after, outcome)] = deliver(outbox, secret_for=secret_for)
    assert outcome.permanent and outcome.status_code is None and outcome.error is not None
    assert expected in outcome.error and "zz!!qq" not in outcome.error
    fix = f"not retried: fix it, then `video-pipelines deliveries redeliver {delivery.webhook_id}`"
    assert outcome.error.endswith(fix)
    assert after.state is DeliveryState.FAILED and after.last_error == outcome.error and after.attempts == 1
    # Never retried, however long one waits; nothing was sent, signed or not.
    assert deliver(outbox, secret_for=secret_for, now=datetime.now(UTC) + timedelta(days=1)) == []
    assert [(a.number, a.status_code, a.error) for a in outbox.attempts(delivery.webhook_id)] == [
        (1, None, outcome.error)
    ]
    assert receiver.requests == []

    # Fixed, then redelivered: the next attempt is sent, signed, with the same webhook-id.
    outbox.redeliver(delivery.webhook_id)
    [(after, outcome)] = deliver(outbox)
    assert outcome.acknowledged and after.state is DeliveryState.DELIVERED and after.attempts == 2
    [request] = receiver.requests
    assert request.webhook_id == delivery.webhook_id
    assert_verified(request)


def test_a_secret_env_not_set_where_webhooks_are_sent_fails_at_once_with_the_fix(
    store: SubmissionStore, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application's own lookup (`secret_lookup`) and sender (`deliver`), as the sensors call them."""
    monkeypatch.delenv("VIDEO_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    outbox = DeliveryOutbox(store)
    delivery = enqueue(outbox, receiver.url(), secret_source="env:VIDEO_WEBHOOK_SECRET")

    [report] = executions.deliver(store)
    assert report.failed and "delivery failed for good" in report.line
    assert "environment variable VIDEO_WEBHOOK_SECRET (the plan's webhook.secretEnv) is not set" in report.line
    [shown] = executions.delivery_report(store, "exec_01")
    assert shown["state"] == "failed" and shown["nextAttemptAt"] is None
    [attempt] = shown["attempts"]  # type: ignore[misc]
    assert "VIDEO_WEBHOOK_SECRET" in attempt["error"] and attempt["statusCode"] is None
    assert executions.deliver(store) == [] and receiver.requests == []

    monkeypatch.setenv("VIDEO_WEBHOOK_SECRET", SECRET)
    executions.redeliver(store, "exec_01", delivery.webhook_id)
    [report] = executions.deliver(store)
    assert not report.failed and report.line.endswith("attempt 2: delivered (HTTP 200)")
    assert_verified(receiver.requests[0])


def test_a_run_whose_secret_env_is_not_set_is_warned_about_at_its_start() -> None:
    plan = {"jobs": [], "webhook": {"url": "https://hooks.example.com/x", "secretEnv": "VIDEO_WEBHOOK_SECRET"}}
    warning = secret_env_warning(plan, {})
    assert warning is not None and "VIDEO_WEBHOOK_SECRET" in warning and "will fail" in warning
    assert secret_env_warning(plan, {"VIDEO_WEBHOOK_SECRET": SECRET}) is None
    assert secret_env_warning({"jobs": [], "webhook": {"url": "https://hooks.example.com/x"}}, {}) is None
    assert secret_env_warning({"jobs": []}, {}) is None


def test_unsigned_webhooks_carry_id_and_timestamp_only(outbox: DeliveryOutbox, receiver: Receiver) -> None:
    enqueue(outbox, receiver.url(), secret_source=None)
    [(_, outcome)] = deliver(outbox, secret_for=lambda _: None)
    assert outcome.acknowledged
    [request] = receiver.requests
    assert request.webhook_id == "msg_exec_01_completed"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    assert "webhook-signature" not in request.headers and "X-Webhook-Signature" not in request.headers


def test_the_secret_is_in_no_column_and_no_repr(store: SubmissionStore, receiver: Receiver, db_url: str) -> None:
    submission, _ = store.submit(
        {"jobs": [{"id": "job1", "type": "generateVideo", "params": {"prompt": "x"}}]},
        SubmitOptions(webhook_url=receiver.url(), webhook_secret=SECRET),
    )
    outbox = DeliveryOutbox(store)
    enqueue(outbox, receiver.url(), submission.execution_id, secret_source="submission")
    receiver.answer(500)

    def from_store(d: Delivery) -> str | None:
        return store.webhook_secret(d.execution_id)

    made = deliver(outbox, secret_for=from_store) + deliver(outbox, secret_for=from_store)
    assert [outcome.status_code for _, outcome in made] == [500, 200]
    for request in receiver.requests:
        assert_verified(request)

    for table in ("video_pipelines_webhook_deliveries", "video_pipelines_webhook_attempts"):
        rows = raw_rows(db_url, table)
        assert rows
        for row in rows:
            for value in row.values():
                assert SECRET not in str(value)
                assert base64.b64encode(SECRET.encode()).decode() not in str(value)
    for delivery, outcome in made:
        assert SECRET not in repr(delivery) and SECRET not in repr(outcome)
    assert all(SECRET not in repr(a) for a in outbox.attempts(made[0][0].webhook_id))


def test_a_store_at_schema_version_1_is_upgraded_with_the_outbox_tables(db_url: str) -> None:
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(psycopg2_url(db_url))
    try:
        with engine.begin() as connection:
            schema.schema_version.create(connection)
            schema.MIGRATIONS[0].apply(connection)
            connection.execute(
                schema.schema_version.insert().values(version=1, description="submissions table", applied_at=T0)
            )
    finally:
        engine.dispose()
    with SubmissionStore(db_url, secret_key=STORE_KEY) as store:
        submission, _ = store.submit({"jobs": []}, SubmitOptions(webhook_url="https://hooks.example.com/a"))
        delivery = enqueue(DeliveryOutbox(store), "https://hooks.example.com/a", submission.execution_id)
        assert store.get(submission.execution_id) == submission
    rows = raw_rows(db_url, "video_pipelines_schema_version")
    assert sorted(row["version"] for row in rows) == list(schema.VERSIONS)
    assert [row["webhook_id"] for row in raw_rows(db_url, "video_pipelines_webhook_deliveries")] == [
        delivery.webhook_id
    ]


def test_outbox_on_a_plain_engine_migrates_its_tables(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        outbox = DeliveryOutbox(engine)
        delivery = enqueue(outbox, "https://hooks.example.com/a")
        assert outbox.get(delivery.webhook_id) == delivery
    finally:
        engine.dispose()


# --- send_once --------------------------------------------------------------------------------


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver over HTTPS whose certificate names only `localhost`, with its CA trusted."""
    ca_path, cert_path, key_path = _issue_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    running = Receiver()
    running.start(tls=context)
    yield running
    running.stop()


def test_https_posts_to_the_checked_ip_with_sni_and_host_of_the_hostname(tls_receiver: Receiver) -> None:
    body = encode_payload(payload_for(status_doc()))
    headers = signature_headers(body, SECRET, webhook_id="msg_tls", timestamp=int(time.time()))
    outcome = send_once(tls_receiver.url(host="localhost"), body, headers, allowed=parse_allowed_hosts("localhost"))
    assert outcome.acknowledged, outcome.error
    [request] = tls_receiver.requests
    assert tls_receiver.sni == ["localhost"] and request.headers["Host"] == f"localhost:{tls_receiver.port}"
    assert request.body == body
    assert_verified(request)

    # The certificate names only `localhost`: posting to 127.0.0.1 must fail verification, and be retried.
    refused = send_once(tls_receiver.url(), body, headers, allowed=LOOPBACK)
    assert not refused.refused and refused.status_code is None
    assert refused.error is not None and refused.error.startswith("TLS certificate of 127.0.0.1 not accepted")
    assert len(tls_receiver.requests) == 1


def _trickling_server(stop: threading.Event) -> int:
    """Accepts one connection and answers one header byte every 0.1 s, for up to 20 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(200):
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(b"a")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    port: int = listener.getsockname()[1]
    return port


def test_timeout_bounds_the_whole_attempt_not_each_read() -> None:
    stop = threading.Event()
    port = _trickling_server(stop)
    try:
        outcome = send_once(f"http://127.0.0.1:{port}/slow", b"{}", {}, allowed=LOOPBACK, timeout=1.0)
    finally:
        stop.set()
    assert outcome.status_code is None
    assert outcome.error == f"no answer from http://127.0.0.1:{port}/slow within 1s"


def test_send_once_sends_exactly_the_body_with_the_headers(receiver: Receiver) -> None:
    body = encode_payload(payload_for(status_doc()))
    headers = signature_headers(body, SECRET, webhook_id="msg_1", timestamp=int(time.time()))
    outcome = send_once(receiver.url("/h?sig=abc"), body, {**headers, "content-type": "text/plain"}, allowed=LOOPBACK)
    assert outcome == AttemptOutcome(status_code=200, duration_ms=outcome.duration_ms)
    [request] = receiver.requests
    assert request.body == body and request.path == "/h?sig=abc"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert_verified(request)
    with pytest.raises(WebhookError, match="timeout"):
        send_once(receiver.url(), body, {}, allowed=LOOPBACK, timeout=0)


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://10.0.0.8/hook", True),
        ("ftp://hooks.example.com/hook", True),
        ("http://no-such-host.invalid/hook", False),
    ],
)
def test_send_once_refusals_and_resolution_errors(url: str, refused: bool) -> None:
    outcome = send_once(url, b"{}", {}, allowed=LOOPBACK, timeout=2.0)
    assert outcome.refused is refused and outcome.status_code is None and outcome.error
