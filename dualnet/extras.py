"""Optional dependencies: a command or API call that needs a framework which is not installed
says which one, and the extra that installs it, as E-EXTRA — never a bare
`ModuleNotFoundError` (exit status 1, not 3).

`dualnet check` needs only lark and NumPy; the extras are `torch` (PyTorch and safetensors),
`keras` (TensorFlow, Keras and safetensors), `onnx` (onnx and ONNX Runtime), `graph`
(grandalf and matplotlib: `dualnet graph`'s SVG and PNG) and `lsp` (pygls and lsprotocol,
for `dualnet lsp`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from dualnet.diagnostics import DualnetError, error, outside

# top-level module → (what it is, the extra that installs it)
MODULES = {
    "torch": ("PyTorch", "torch"),
    "safetensors": ("safetensors", "torch"),
    "tensorflow": ("TensorFlow", "keras"),
    "keras": ("Keras", "keras"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("ONNX Runtime", "onnx"),
    "grandalf": ("grandalf", "graph"),
    "matplotlib": ("matplotlib", "graph"),
    "pygls": ("pygls", "lsp"),
    "lsprotocol": ("lsprotocol", "lsp"),
}

F = TypeVar("F", bound=Callable)


def missing(exc: ImportError) -> DualnetError | None:
    """E-EXTRA for an import of an optional dependency that failed; None for any other."""
    name = (exc.name or "").partition(".")[0]
    if name not in MODULES:
        return None
    what, extra = MODULES[name]
    return error(
        "E-EXTRA",
        f"this needs {what} (the Python package `{name}`), which is not installed",
        outside(f"the Python environment {sys.prefix}"),
        notes=[f"install it with `pip install 'dualnet[{extra}]'`"],
    )


def needs_extras(function: F) -> F:
    """`function`, raising E-EXTRA instead of an ImportError of an optional dependency."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ImportError as exc:
            diagnostic = missing(exc)
            if diagnostic is None:
                raise
            raise diagnostic from None

    return wrapper  # type: ignore[return-value]
