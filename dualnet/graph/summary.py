"""`dualnet check --summary`: per call site of a built-in layer (and per function call
that multiplies, such as `matmul`), the output types, multiply-accumulates, output bytes,
parameters and parameter bytes, with totals — like torchinfo, from the checked IR."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dualnet.diagnostics import Span
from dualnet.graph.walk import FirstUse, layer_of, macs, sites, sized
from dualnet.ir.dims import substitute
from dualnet.ir.graph import Graph, ModelInstance


@dataclass(frozen=True)
class Row:
    path: str  # the layer's path; a function call: its instance's path, op and line
    op: str
    output: str  # the output types, as the checker prints them
    macs: object  # int, or a `Dim` over the sizes --dims leaves symbolic
    output_bytes: object
    params: int  # counted at the layer's first call
    param_bytes: int
    span: Span | None


@dataclass(frozen=True)
class Totals:
    macs: object
    output_bytes: object
    params: int
    param_bytes: int


def summarize(
    instance: ModelInstance, graph: Graph, dims: Mapping[str, int] | None = None
) -> tuple[list[Row], Totals]:
    """The rows of the entry graph's call sites in execution order (then any layer never
    called), and their totals; sizes in `dims` replace the symbolic ones."""
    dims = dims or {}
    first, rows = FirstUse(), []
    for where, node, sizes in sites(graph, dims):
        layer = layer_of(where, node)
        count = substitute(macs(where, node), sizes)
        if layer is None and count == 0:
            continue
        outputs = [sized(v.type, sizes) for v in node.outputs]
        params = first.params(layer)
        if layer is not None:
            path = layer.path
        else:
            prefix = f"{where.instance.path}." if where.instance.path else ""
            path = f"{prefix}{node.op}@{node.span.line if node.span else '?'}"
        rows.append(
            Row(
                path,
                node.op,
                ", ".join(map(str, outputs)),
                count,
                sum((t.numel * t.dtype.itemsize for t in outputs), 0),
                params,
                _param_bytes(layer) if params else 0,
                node.span,
            )
        )
    for layer in instance.layers():
        if layer.path not in first.seen and layer.param_count:
            params = first.params(layer)
            rows.append(
                Row(layer.path, layer.op, "(never called)", 0, 0, params, _param_bytes(layer), None)
            )
    totals = Totals(
        sum((r.macs for r in rows), 0),
        sum((r.output_bytes for r in rows), 0),
        sum(r.params for r in rows),
        sum(r.param_bytes for r in rows),
    )
    return rows, totals


def _param_bytes(layer) -> int:
    """The bytes of the parameters `param_count` counts."""
    return sum(
        p.numel * p.dtype.itemsize
        for name, p in layer.params.items()
        if p.trainable and name not in layer.tied
    )


HEADER = ["layer", "op", "output", "MACs", "output bytes", "params", "param bytes"]
NUMBERS = {3, 4, 5, 6}  # right-aligned columns


def table(rows: list[Row], totals: Totals) -> list[list[str]]:
    """The rows as text, and a last row of totals."""
    out = [
        [r.path, r.op, r.output, *map(number, (r.macs, r.output_bytes, r.params, r.param_bytes))]
        for r in rows
    ]
    sums = (totals.macs, totals.output_bytes, totals.params, totals.param_bytes)
    return [*out, ["total", "", "", *map(number, sums)]]


def number(n) -> str:
    """An int with thousands separators; a symbolic size as the checker prints it."""
    return f"{n:,}" if isinstance(n, int) else str(n)
