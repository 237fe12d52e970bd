"""The op reference page, from `dualnet.ops.REGISTRY`: per op its signature, rule, gradients,
axis use and backend support, and the code each backend writes for the op's first lowering
test case (tests/backends/lowering_cases.py, written by the cases' own `python_sources` and
`onnx_nodes`, which the lowering tests execute against the op's NumPy reference)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "backends"))

from lowering_cases import CASES, LAYER_CASES, onnx_nodes, python_sources  # noqa: E402

from dualnet.backends import BACKENDS  # noqa: E402
from dualnet.backends.keras.layout import SPATIAL_OPS  # noqa: E402
from dualnet.backends.onnx.emit import DEFAULT_OPSET  # noqa: E402
from dualnet.backends.rows import lowering_row  # noqa: E402
from dualnet.ir.types import DType  # noqa: E402
from dualnet.ops import REGISTRY  # noqa: E402
from dualnet.ops.registry import _show  # noqa: E402

AXES = {
    "channels": "axis 1 is channels, the axes after it spatial (Keras runs it channels-last)",
    "pointwise": "element-wise: any axis order its inputs share",
    "attribute": "the axes its `axis` attribute names",
    "fixed": "the axis order is the meaning",
}


def _first_cases() -> dict:
    first = {}
    for case in CASES + LAYER_CASES:
        first.setdefault(case.op, case)
    return first


def _literal(value) -> str:
    """An attribute's value as .dnet writes it."""
    if isinstance(value, DType):
        return f'"{value.value}"'
    if isinstance(value, slice):
        bounds = [value.start, value.stop] + ([value.step] if value.step is not None else [])
        return ":".join("" if b is None else str(b) for b in bounds)
    if isinstance(value, tuple):
        return f"({', '.join(map(_literal, value))}{',' if len(value) == 1 else ''})"
    return _show(value)


def _code(text: str) -> list[str]:
    return ["```python", text, "```", ""]


def _example(case) -> list[str]:
    """The generated PyTorch, Keras and ONNX code of one case."""
    bound, construct, call = python_sources(case, "torch")
    inputs = ", ".join(
        f"`{name}: {t}`" if not isinstance(t, list) else f"`{name}: [{', '.join(map(str, t))}]`"
        for name, t in bound.types.items()
        if t is not None
    )
    given = {**case.config, **case.attrs}
    head = f"Example, the first lowering test case: inputs {inputs or '(none)'}"
    if given:
        head += "; " + ", ".join(f"`{k}={_literal(v)}`" for k, v in given.items())
    lines = [f"{head}; result `{', '.join(map(str, bound.out_types))}`.", "", "PyTorch:", ""]
    lines += _code(f"module = {construct}\ny = {call}" if construct else f"y = {call}")
    _, construct, call = python_sources(case, "keras")
    keras_layout = " (channels-last arrays)" if case.op in SPATIAL_OPS else ""
    lines += [f"Keras{keras_layout}:", ""]
    lines += _code(f"layer = {construct}\ny = {call}" if construct else f"y = {call}")
    opset = max(DEFAULT_OPSET, lowering_row(case.op, "onnx").min_opset)
    nodes = onnx_nodes(case, opset).builder.nodes
    lines += [f"ONNX (opset {opset}): " + " → ".join(f"`{n.op_type}`" for n in nodes), ""]
    return lines


def ops_page() -> str:
    cases = _first_cases()
    lines = [
        "# Ops",
        "",
        f"The {len(REGISTRY)} built-in ops, generated from `dualnet.ops.REGISTRY` when the "
        "site is built. For each op: its call signature (and a layer's constructor), its "
        "rule, the inputs gradients flow through, how it uses its axes, and the code each "
        "backend writes for the op's first case in `tests/backends/lowering_cases.py` — the "
        "code the lowering tests run and compare with the op's NumPy reference. In the "
        "generated files the names differ (a layer is an attribute such as `self.conv1`).",
        "",
        "| op | kind | " + " | ".join(BACKENDS) + " |",
        "|---|---|" + "---|" * len(BACKENDS),
    ]
    for name, op in REGISTRY.items():
        support = " | ".join(b.support(name) for b in BACKENDS.values())
        kind = "layer" if op.is_layer else "function"
        lines.append(f"| [`{name}`](#{name.lower()}) | {kind} | {support} |")
    lines.append("")
    for name, op in REGISTRY.items():
        lines += [f"## {name}", ""]
        if op.is_layer:
            lines += [f"Layer `{name}{op.construct}`; a call takes `{op.signature}`.", ""]
        else:
            lines += [f"Function `{name}{op.signature}`.", ""]
        if op.doc:
            lines += [op.doc, ""]
        grads = ", ".join(f"`{x}`" for x in op.differentiable) or "none (not differentiable)"
        lines += [f"- Gradients flow through: {grads}.", f"- Axes: {AXES[op.axes]}."]
        lines.append("")
        lines += _example(cases[name])
    return "\n".join(lines)
