"""Package exports loaded at their first use, so a command pays only for the modules it uses (an `__init__`
that imports every submodule made a local `submit` import httpx, the API-key tables and the cost reports)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports `package.<module>` at the first use of one of the names
    `exports[module]`.

    Beside it, the package imports each name under `if TYPE_CHECKING:`, so type checkers and import-linter read
    the exports as plain imports, and sets `__getattr__` only when not type checking (a typo stays an error)."""

    homes = {name: module for module, names in exports.items() for name in names}

    def load(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return load
