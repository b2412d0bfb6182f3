"""Shared fixtures: real PostgreSQL databases, a real HTTP media server, real Dagster instances.

Each folder's conftest marks its tests: unit/ (`unit`: no Dagster, no service), dagster/ (`dagster`:
in-process runs, sensors, instances), e2e/ (`e2e`: real processes), postgres/ (`postgres`: unit/'s
store tests again on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.fernet import Fernet

from .process_table import ProcessEntry, live_processes, wait_until_none

if TYPE_CHECKING:
    from video_pipelines.submissions import SubmissionStore

    from .memory_records import MemoryRunRecords

POSTGRES_ADMIN_URL = os.environ.get("VIDEO_PIPELINES_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = bool(os.environ.get("CI"))
# Dagster's warnings, ignored where Dagster runs: a filter in pyproject would import dagster in every session.
DAGSTER_WARNINGS = [pytest.mark.filterwarnings(f"ignore::dagster.{name}") for name in ("BetaWarning", "PreviewWarning")]


# Every process a test session starts inherits this variable, set to a value of that session (each xdist
# worker is a session): after the session, `no_process_left_behind` finds what is still running by it,
# children of processes that ended (reparented to init) included.
SESSION_ENV = "VP_TEST_SESSION"
# How long processes that are ending at the session's end have to end.
LEFTOVER_GRACE_SECONDS = 30.0
MULTIPROCESSING_HELPERS = ("from multiprocessing.resource_tracker import", "from multiprocessing.forkserver import")


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fails the session if a process it started is still running after it (then kills them: CI stays clean).

    A test's teardown must stop everything it started; a process left running holds ports, databases and
    CPU for the tests after it, and for the next CI run on the same machine.
    """
    session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    already_running = {entry.pid for entry in live_processes()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SESSION_ENV, session)
        yield

    def started_here() -> list[ProcessEntry]:
        processes = live_processes()
        parents = {entry.pid: entry.ppid for entry in processes}

        def descends(pid: int) -> bool:
            while pid > 1:
                pid = parents.get(pid, 0)
                if pid == os.getpid():
                    return True
            return False

        # The variable finds orphans; descent finds a process that rewrote its environment's memory (setproctitle).
        return [
            entry
            for entry in processes
            if entry.pid not in already_running
            and (descends(entry.pid) or entry.environ(SESSION_ENV) == session)
            and not _ends_with_this_process(entry)
        ]

    left = wait_until_none(started_here, LEFTOVER_GRACE_SECONDS)
    if left:
        for entry in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry.pid, signal.SIGKILL)
        pytest.fail(
            f"{len(left)} process(es) started by this test session still ran {LEFTOVER_GRACE_SECONDS:.0f} s after "
            "its last test (now killed); each with the test that was running when it started:\n"
            + "\n".join(f"  {entry.describe()}\n    started during {_test_of(entry)}" for entry in left),
            pytrace=False,
        )


def _ends_with_this_process(process: ProcessEntry) -> bool:
    """Python's multiprocessing helpers (Dagster's multiprocess executor starts them here), ending with this process."""
    return process.ppid == os.getpid() and any(helper in process.command for helper in MULTIPROCESSING_HELPERS)


def _test_of(process: ProcessEntry) -> str:
    return process.environ("PYTEST_CURRENT_TEST") or "(its environment does not tell)"


def mark_folder(items: list[pytest.Item], conftest: str, *marks: pytest.MarkDecorator) -> list[pytest.Item]:
    """Add `marks` to the items under the folder of `conftest` (a folder conftest's `__file__`); those items."""
    folder = Path(conftest).parent
    ours = [item for item in items if folder in item.path.parents]
    for item in ours:
        for mark in marks:
            item.add_marker(mark)
    return ours


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_unavailable(reason: str) -> None:
    # In CI a missing PostgreSQL is a failure, never a silent skip.
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def admin_connection() -> Any:
    import psycopg2

    try:
        connection = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        _postgres_unavailable(str(exc))
    connection.autocommit = True
    return connection


@contextlib.contextmanager
def fresh_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a plain postgresql:// URL), empty or a copy of `template`; dropped afterwards."""
    name = f"vp_test_{uuid.uuid4().hex[:12]}"
    admin = admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    with fresh_database() as url:
        yield url


# The key of the `store` fixture's webhook secrets, for tests that open more stores on its database.
STORE_KEY = Fernet.generate_key()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A submission store's database for one test: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'video_pipelines.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def records() -> MemoryRunRecords:
    """Run records in memory (`tests/memory_records.py`)."""
    from .memory_records import MemoryRunRecords

    return MemoryRunRecords()


@pytest.fixture
def store(db_url: str) -> Iterator[SubmissionStore]:
    """A submission store on `db_url`, its secrets encrypted with `STORE_KEY`."""
    from video_pipelines.submissions import SubmissionStore

    with SubmissionStore(db_url, secret_key=STORE_KEY) as opened:
        yield opened


@dataclass
class MediaServer:
    """A real HTTP server on 127.0.0.1 serving files from `root`."""

    root: Path
    port: int
    fail_next: dict[str, list[int]]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def serving(root: Path) -> Iterator[MediaServer]:
    """A real HTTP server on 127.0.0.1 for the files in `root`; `fail_next[name]` lists status codes to answer
    before serving the file."""
    fail_next: dict[str, list[int]] = {}

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            codes = fail_next.get(self.path.lstrip("/"))
            if codes:
                self.send_error(codes.pop(0))
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield MediaServer(root, server.server_address[1], fail_next)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def media_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MediaServer]:
    """Serves `tmp_path/media` (`serving`)."""
    root = tmp_path / "media"
    root.mkdir()
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "127.0.0.1")
    with serving(root) as server:
        yield server


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with the embedded default instance (SQLite) and its own artifact folder."""
    from video_pipelines.deployment.instance import prepare_dagster_home

    monkeypatch.delenv("VIDEO_PIPELINES_DATABASE_URL", raising=False)
    monkeypatch.delenv("VIDEO_PIPELINES_STORAGE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return prepare_dagster_home()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 in server mode: a real S3-compatible HTTP endpoint on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and no AWS configuration of the machine leaking into the tests."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VIDEO_PIPELINES_PUBLIC_BASE_URL", raising=False)


@pytest.fixture
def s3_bucket(s3_endpoint: str, aws_env: None) -> str:
    """A new, empty bucket on the moto endpoint."""
    import boto3

    name = f"vp-test-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real 1 s 160x90 MP4, as a remote provider would serve them."""
    from video_pipelines.operations import generate_clip

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    generate_clip(path, prompt="served", width=160, height=90, duration=1, seed=1)
    return path.read_bytes()


VOICE = "voice.wav"
UNAVAILABLE = [503] * 50  # more than one run's transient retries ask for


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transient retries back off from 10 ms instead of 2 s: the same number of attempts, in a blink."""
    from video_pipelines.nodes import retries

    monkeypatch.setattr(retries, "RETRY_BASE_DELAY_SECONDS", 0.01)


@pytest.fixture
def voice(media_server: MediaServer) -> MediaServer:
    """`voice.wav` (a 440 Hz tone) on a real server that answers 503 to it until `fail_next` is cleared.

    `media_server` allows 127.0.0.1 (`VIDEO_PIPELINES_ALLOWED_HOSTS`), as a deployment must to fetch from it.
    """
    from .media import make_tone

    make_tone(media_server.root / VOICE, 440, 1.0)
    media_server.fail_next[VOICE] = list(UNAVAILABLE)
    return media_server
