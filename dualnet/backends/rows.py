"""Lowering rows: how each backend lowers each registry op, registered on the op itself
(`OpDef.lowerings[backend]`) and read back through one lookup, `lowering_row`, by every
emitter, by `Backend.supports` and by the op matrix.

A row carries what a backend needs to know of one op:
- `FunctionRow(lower)`: a function op in a Python-source backend; `lower(call)` is the
  expression computing the node.
- `LayerRow(construct, call)`: a layer in a Python-source backend; `construct(config, fmt)`
  is the constructor expression for `__init__`, `call(layer, call)` the call in `forward`
  (Keras extends it: `keras.lowering.KerasLayerRule`, the whole Keras knowledge of a layer).
- `OnnxRow(lower, min_opset)`: an ONNX row; `lower(call)` adds the nodes and returns the
  result names; `min_opset` (required: no default to forget) is the oldest opset it works
  with.

A backend's lowering module builds its rows in a `Rows` table, each row added where it is
defined (`@ROWS.function("exp", "log")`, `ROWS.layer("Linear", ...)`), and registers the
table once (`ROWS.register()`). The Python-source backends start from the rows they share
(`python_rows.shared_rows`) and override only the rows that differ.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dualnet.ops import REGISTRY

OLDEST_OPSET = 13  # the oldest ONNX opset any row may claim (the emitter's own minimum)


@dataclass(frozen=True)
class FunctionRow:
    """A function op in a Python-source backend: `lower(call)` → expression source."""

    lower: Callable[[Any], str]


@dataclass(frozen=True)
class LayerRow:
    """A layer in a Python-source backend. `construct(config, fmt)`: the layer's constructor
    expression from its resolved config (`LayerInstance.attrs`). `call(layer, call)`: the
    call expression, `layer` being the layer's source ("self.conv1") and `call` the backend's
    NodeCall."""

    construct: Callable[[dict, Callable[[Any], str]], str]
    call: Callable[[str, Any], str]


@dataclass(frozen=True)
class OnnxRow:
    """An ONNX row: `lower(call)` adds the node's ONNX nodes to `call.b` and returns the names
    of its results; `min_opset` is the oldest opset the row works with (required)."""

    lower: Callable[[Any], list[str]]
    min_opset: int

    def __post_init__(self) -> None:
        if not isinstance(self.min_opset, int) or self.min_opset < OLDEST_OPSET:
            raise ValueError(f"an ONNX row's min_opset must be an opset >= {OLDEST_OPSET}")


Row = FunctionRow | LayerRow | OnnxRow


class Rows(dict):
    """One backend's rows by op name, filled where each row is defined; `register` puts them
    on the registry's ops. `base`: rows to start from (the shared ones), overridden by
    `function`, `layer` or `add`."""

    def __init__(self, backend: str, base: dict[str, Row] | None = None):
        super().__init__(base or {})
        self.backend = backend

    def add(self, op: str, row: Row) -> None:
        if op not in REGISTRY:
            raise KeyError(f"`{op}` is not a built-in op")
        self[op] = row

    def function(self, *ops: str, **meta: Any) -> Callable:
        """A decorator adding the function below as the row of `ops`: a FunctionRow, or with
        `min_opset=` an OnnxRow."""

        def add(lower: Callable) -> Callable:
            for op in ops:
                self.add(
                    op, OnnxRow(lower, **meta) if self.backend == "onnx" else FunctionRow(lower)
                )
            return lower

        return add

    def layer(self, op: str, construct: Callable, call: Callable) -> None:
        self.add(op, LayerRow(construct, call))

    def register(self) -> None:
        """`OpDef.lowerings[backend]` = the op's row, for every row; an op whose row kind does
        not fit it (a layer row for a function op, an ONNX row elsewhere) is an error."""
        for name, row in self.items():
            op = REGISTRY[name]
            expected = (
                OnnxRow if self.backend == "onnx" else LayerRow if op.is_layer else FunctionRow
            )
            if not isinstance(row, expected):
                raise TypeError(f"the {self.backend} row of `{name}` is not a {expected.__name__}")
            op.lowerings[self.backend] = row


def lowering_row(op: str, backend: str, layer: bool | None = None) -> Any:
    """The row lowering registry op `op` in `backend` (its lowering module imported on first
    use); a KeyError naming what is missing. `layer`: True or False refuses an op of the
    other kind (a layer where a function is lowered)."""
    if op not in REGISTRY:
        raise KeyError(f"`{op}` is not a built-in op")
    importlib.import_module(f"dualnet.backends.{backend}.lowering")  # `Backend.package`
    definition = REGISTRY[op]
    if layer is not None and definition.is_layer != layer:
        kind = "a layer, not a function" if definition.is_layer else "a function, not a layer"
        raise KeyError(f"`{op}` is {kind}")
    row = definition.lowerings.get(backend)
    if row is None:
        raise KeyError(f"`{op}` has no {backend} lowering row")
    return row
