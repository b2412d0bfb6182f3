"""`GET /health`'s checks: database, daemon heartbeats (without them nothing launches) and storage, each with
a timeout. No authentication: it names no tenant, and an unexpected error only by type."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import dagster as dg
import sqlalchemy as sa

from video_pipelines.deployment.daemons import stale_daemons
from video_pipelines.storage import ArtifactStore
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.breakers import BreakerSettings, ProviderCircuits

log = logging.getLogger(__name__)

PROBE = b"video-pipelines /health probe: artifact storage is writable\n"
PROBE_SHA256 = hashlib.sha256(PROBE).hexdigest()


class CheckFailed(Exception):
    """A check found its part down; the message says why and may be shown to anyone."""


def check_database(store: SubmissionStore) -> None:
    with store.reader.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def open_circuits(store: SubmissionStore) -> dict[str, str]:
    """The providers whose circuit is open (or half-open), for `/health` to list: a provider's outage is not the
    deployment's (nodes fall back or wait for it), so it never turns `/health` 503."""
    circuits = ProviderCircuits(store, BreakerSettings())
    return {provider: state.value for provider, state in circuits.open_circuits().items()}


def check_daemon(instance: dg.DagsterInstance, max_age_seconds: float, now: float | None = None) -> None:
    """Raise CheckFailed naming each required daemon without a recent heartbeat."""
    beats = {kind: beat.timestamp for kind, beat in instance.get_daemon_heartbeats().items()}
    required = instance.get_required_daemon_types()
    stale = stale_daemons(beats, required, max_age_seconds, time.time() if now is None else now)
    if stale:
        raise CheckFailed(f"is dagster-daemon running? {', '.join(stale)}")


def check_storage(storage: Callable[[], ArtifactStore]) -> None:
    store = storage()
    with tempfile.TemporaryDirectory(prefix="vp-health-") as folder:
        probe = Path(folder) / "probe.txt"
        probe.write_bytes(PROBE)
        stored = store.put_file(probe, sha256=PROBE_SHA256, suffix=".txt", content_type="text/plain")
    if not store.exists(stored.key):
        raise CheckFailed(f"the probe object {stored.key} was stored but cannot be found again")


async def run_checks(checks: dict[str, Callable[[], None]], timeout_seconds: float) -> dict[str, str | None]:
    """Every blocking check at once, each in a worker thread (any error or a timeout is its problem): each check's
    problem, None when it is ok, in the order given."""
    results: dict[str, str | None] = {}

    async def run(name: str, check: Callable[[], None]) -> None:
        try:
            with anyio.fail_after(timeout_seconds):
                # A stuck check is left behind in its thread: /health answers in time all the same.
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except TimeoutError:
            results[name] = f"no answer within {timeout_seconds:g} s"
        except CheckFailed as exc:
            results[name] = str(exc)
        except Exception as exc:
            log.warning("/health: the %s check failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = f"{type(exc).__name__} (see the server log)"
        else:
            results[name] = None

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    return {name: results[name] for name in checks}
