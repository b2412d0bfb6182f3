"""The unit tests import no Dagster: each module of tests/unit, imported in a clean interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_no_unit_test_module_imports_dagster() -> None:
    modules = sorted(f"tests.unit.{path.stem}" for path in HERE.glob("test_*.py"))
    code = f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
    code += "print(sorted(name for name in sys.modules if name.split('.')[0] == 'dagster')[:5])"
    done = subprocess.run([sys.executable, "-c", code], cwd=HERE.parents[1], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"a module of tests/unit imports dagster: {done.stdout}"
