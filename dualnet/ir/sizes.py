"""Whether a checked model can run at given input sizes: every value it computes has a size
of at least 1 on every axis (a network that downsamples 32 times needs inputs of 32 or
more; smaller ones would fail inside a framework, far from the cause)."""

from __future__ import annotations

from collections.abc import Mapping

from dualnet.diagnostics import error, option
from dualnet.ir.dims import Dim, substitute
from dualnet.ir.graph import Graph


def require_positive_sizes(graph: Graph, sizes: Mapping[str, int], given: str) -> None:
    """Raise E-INPUT at the first value of `graph` (callees included) with a size below 1
    when the input dimensions have `sizes`; `given` says where the sizes came from."""
    _walk(graph, dict(sizes), given, sizes)


def _walk(graph: Graph, env: dict[str, int], given: str, sizes: Mapping[str, int]) -> None:
    for node in graph.nodes:
        if node.kind == "call" and node.callee is not None:  # the innermost value first
            _walk(node.callee, {**env, **callee_sizes(node, env)}, given, sizes)
        for value in node.outputs:
            for d in value.type.shape:
                n = substitute(d, env)
                if isinstance(n, int) and n < 1:
                    at = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
                    raise error(
                        "E-INPUT",
                        f"with the input sizes {at} ({given}) the size "
                        f"`{d}` here is {n}: these inputs are too small for the model",
                        node.span,
                        f"a size of {n}",
                        ["give larger input sizes"],
                    )


def callee_sizes(node, env: Mapping[str, int | Dim]) -> dict[str, int | Dim]:
    """The callee's dimension names, bound to the sizes of the call's inputs: ints, or the
    caller's symbolic sizes (a callee traced in its caller's names keeps them)."""
    bound: dict[str, int | Dim] = {}
    for outer, inner in zip(node.inputs, node.callee.inputs, strict=False):
        for od, idim in zip(outer.type.shape, inner.type.shape, strict=False):
            if isinstance(idim, Dim) and idim.symbol is not None:
                bound.setdefault(idim.symbol, substitute(od, env))
    return bound


def parse_dims(text: str | None) -> dict[str, int]:
    """`B=2,T=16` → {"B": 2, "T": 16} (E-INPUT when malformed)."""
    out: dict[str, int] = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, value = item.partition("=")
        if (
            not sep
            or not name.strip().isidentifier()
            or not value.strip().isdigit()
            or int(value) < 1
        ):
            raise error("E-INPUT", f"`{item}` is not NAME=SIZE (a positive int)", option("--dims"))
        out[name.strip()] = int(value)
    return out
