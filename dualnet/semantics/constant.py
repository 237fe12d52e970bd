"""Tensors computed at compile time: a `Buffer(expr)` of built-in functions of constants
(`arange`, `stack`, arithmetic, `flatten`, `permute`, sums, ...) is traced into a graph of
its own and evaluated with the ops' NumPy references into a concrete table."""

from __future__ import annotations

import math

from dualnet.diagnostics import Span, error
from dualnet.ir.dims import Dim
from dualnet.ir.graph import Graph, by_parameter
from dualnet.ops import REGISTRY
from dualnet.ops.lazy_numpy import np

MAX_ELEMENTS = 1_000_000  # of any tensor computed on the way (a table, not a dataset)


def evaluate(graph: Graph, value, span: Span):
    """The NumPy array of `value`, computed from the op and constant nodes of `graph`."""
    env: dict[int, object] = {}
    for node in graph.nodes:  # op and constant nodes (the tracer refuses layers)
        for out in node.outputs:
            _check_size(out.type.shape, node.span or span)
        if node.kind == "constant":
            dtype = node.outputs[0].type.dtype.numpy or "float32"
            results = [np.asarray(node.attrs["value"], dtype=dtype)]
        else:
            named = by_parameter(node, [env[id(v)] for v in node.inputs])
            results = REGISTRY[node.op].reference(named, dict(node.attrs), {})
        for out, x in zip(node.outputs, results, strict=True):
            env[id(out)] = np.asarray(x, dtype=out.type.dtype.numpy or "float32")
    return env[id(value)]


def _check_size(shape: tuple, span: Span) -> None:
    symbolic = [d for d in shape if isinstance(d, Dim)]
    if symbolic:
        raise error(
            "E-SHAPE",
            f"a computed Buffer's sizes must be known at compile time, found `{symbolic[0]}`",
            span,
            "symbolic size",
            ["compute it from hyperparameters and constants"],
        )
    if math.prod(map(int, shape)) > MAX_ELEMENTS:
        raise error(
            "E-LIMIT",
            f"a tensor computed at compile time has more than {MAX_ELEMENTS:,} elements",
            span,
            "too large",
        )
