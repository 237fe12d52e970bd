"""A stable text form of the IR (`dualnet ir FILE`), for debugging and golden tests.

Each model instance is printed once, children after parents; graph values are numbered
`%1, %2, ...` per graph; source locations use the file's base name so the text does not
depend on the working directory.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from dualnet.diagnostics import Span
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple | list):
        return "(" + ", ".join(format_value(x) for x in v) + ")"
    if isinstance(v, slice):
        return ":".join("" if x is None else str(x) for x in (v.start, v.stop, v.step))
    return str(v)


def _attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in attrs.items())


def _loc(span: Span | None) -> str:
    return f"  # {PurePath(span.file).name}:{span.line}:{span.column}" if span else ""


def print_ir(instance: ModelInstance) -> str:
    lines: list[str] = []
    _instance(instance, lines)
    return "\n".join(lines) + "\n"


def _instance(inst: ModelInstance, lines: list[str]) -> None:
    title = inst.path or "<entry>"
    hyper = f"({_attrs(inst.hyper)})" if inst.hyper else ""
    lines.append(f"model {inst.definition}{hyper} at {title}{_loc(inst.span)}")
    for name, child in inst.children.items():
        if isinstance(child, LayerInstance):
            lines.append(f"  layer {name}: {child.op}({_attrs(child.attrs)}){_loc(child.span)}")
            for pname, p in {**child.params, **child.buffers}.items():
                kind = "param" if p.trainable else "buffer"
                spec = f"tied to {child.tied[pname]}" if pname in child.tied else p
                lines.append(f"    {kind} {pname}{': ' if pname else ''}{spec}")
        else:
            lines.append(f"  layer {name}: {child.definition} (model, below)")
    for graph in inst.graphs:
        _graph(graph, lines)
    lines.append("")
    for child in inst.children.values():
        if isinstance(child, ModelInstance):
            _instance(child, lines)


def _graph(graph: Graph, lines: list[str]) -> None:
    number: dict[int, int] = {}

    def ref(v) -> str:
        if id(v) not in number:
            number[id(v)] = len(number) + 1
        return f"%{number[id(v)]}"

    args = ", ".join(f"{ref(v)} {v.name}: {v.type}" for v in graph.inputs)
    lines.append(f"  forward({args}):")
    for node in graph.nodes:
        outs = ", ".join(f"{ref(v)} {v.name}: {v.type}" for v in node.outputs)
        ins = ", ".join(ref(v) for v in node.inputs)
        if node.kind == "constant":
            rhs = f"constant {format_value(node.attrs['value'])}"
        elif node.kind == "op":
            rhs = f"{node.op}({ins}{', ' if ins and node.attrs else ''}{_attrs(node.attrs)})"
        else:
            extra = f", {_attrs(node.attrs)}" if node.attrs else ""
            rhs = f"{node.kind} {node.target}: {node.op}({ins}{extra})"
        lines.append(f"    {outs} = {rhs}{_loc(node.span)}")
    lines.append(f"    return {', '.join(ref(v) for v in graph.outputs)}")
