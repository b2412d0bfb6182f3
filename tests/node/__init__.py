"""JavaScript the tests run in Node (v20, installed on the machine and in CI): what a receiver in JavaScript sees."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..conftest import IN_CI

HERE = Path(__file__).parent
RECEIVER = HERE / "receiver.mjs"


def node_executable() -> str:
    """The `node` on PATH; without one, a skip (a failure in CI, where it is installed)."""
    found = shutil.which("node")
    if found is None:
        if IN_CI:
            pytest.fail("node is required in CI (tests/node): install Node.js 20")
        pytest.skip("node is not installed: the JavaScript side of these tests cannot run")
    return found
