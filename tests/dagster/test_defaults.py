"""The docs' configuration table (docs/configuration.md) and the code agree on every default (the code read from an empty environment)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from video_pipelines import api
from video_pipelines.api.settings import ApiSettings
from video_pipelines.deployment import postgres, workers
from video_pipelines.executions.attempts import max_resumes
from video_pipelines.operations.checks import parse_blocking
from video_pipelines.plan.limits import max_nodes
from video_pipelines.submissions.breakers import BreakerSettings
from video_pipelines.webhooks.outbox import RetrySchedule

CONFIGURATION_PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
NAME = re.compile(r"`(VIDEO_PIPELINES_[A-Z_]+)`")


def _number(value: float) -> str:
    return f"{value:g}"


def _api() -> ApiSettings:
    return ApiSettings.from_env({})


# Each documented default, as the code computes it with none of the variables set.
CODE_DEFAULTS: dict[str, Callable[[], str]] = {
    "VIDEO_PIPELINES_API_MAX_BODY_BYTES": lambda: str(_api().max_body_bytes),
    "VIDEO_PIPELINES_API_RATE_LIMIT": lambda: "off" if _api().rate_limit is None else str(_api().rate_limit),
    "VIDEO_PIPELINES_API_EVENTS_POLL_SECONDS": lambda: _number(_api().events_poll_seconds),
    "VIDEO_PIPELINES_API_EVENTS_KEEPALIVE_SECONDS": lambda: _number(_api().events_keepalive_seconds),
    "VIDEO_PIPELINES_API_DAEMON_MAX_AGE_SECONDS": lambda: _number(_api().daemon_max_age_seconds),
    "VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS": lambda: _number(_api().unfetched_grace_seconds),
    "VIDEO_PIPELINES_MAX_RESUMES": lambda: str(max_resumes({})),
    "VIDEO_PIPELINES_WEBHOOK_RETRY_DELAYS": lambda: ",".join(map(_number, RetrySchedule.from_env({}).delays)),
    "VIDEO_PIPELINES_DB_POOL_SIZE": lambda: str(postgres.pool_size()),
    "VIDEO_PIPELINES_BLOCKING_CHECKS": lambda: ",".join(sorted(parse_blocking(None))),
    "VIDEO_PIPELINES_QUEUE": lambda: workers.DEFAULT_QUEUE,
    "VIDEO_PIPELINES_MAX_NODES": lambda: str(max_nodes({})),
    "VIDEO_PIPELINES_BREAKER_FAILURES": lambda: str(BreakerSettings.from_env({}).failures),
    "VIDEO_PIPELINES_BREAKER_OPEN_SECONDS": lambda: _number(BreakerSettings.from_env({}).open_seconds),
}


def table_defaults(text: str) -> dict[str, str]:
    """`variable -> default` of every markdown table row naming VIDEO_PIPELINES_ variables in its first cell.

    A row naming several variables gives them its default's comma-separated values in order
    (`1, 15`), unless the default is one value (then all share it).
    """
    defaults: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = NAME.findall(cells[0])
        default = cells[-1].replace("`", "")
        values = [part.strip() for part in default.split(", ")] if len(names) > 1 else [default]
        for position, name in enumerate(names):
            defaults[name] = values[position] if len(values) == len(names) else default
    return defaults


@pytest.fixture(autouse=True)
def empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CODE_DEFAULTS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", sorted(CODE_DEFAULTS))
def test_the_configuration_page_states_the_code_default(name: str) -> None:
    documented = table_defaults(CONFIGURATION_PAGE.read_text())
    assert name in documented, f"docs/configuration.md does not list {name}"
    assert documented[name].split(" ")[0] == CODE_DEFAULTS[name](), (
        f"docs/configuration.md says {name} defaults to {documented[name]!r}"
    )


def test_the_api_settings_docstring_states_the_code_defaults() -> None:
    documented = table_defaults(api.settings.__doc__ or "")
    checked = {name: documented[name] for name in documented if name in CODE_DEFAULTS}
    assert checked, "the settings docstring lists no variable"
    for name, default in checked.items():
        assert default.split(" ")[0] == CODE_DEFAULTS[name](), f"api.settings says {name} defaults to {default!r}"
