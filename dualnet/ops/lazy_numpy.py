"""NumPy, imported on first use: the reference implementations need it, checking does not
(so `dualnet check` starts faster)."""

from __future__ import annotations

import importlib
from typing import Any


class _LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        return getattr(module, attr)


np: Any = _LazyModule("numpy")
