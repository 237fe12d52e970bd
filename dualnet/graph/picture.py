"""The picture of a checked model: one box per input, output, built-in layer call,
function call and sub-model call (sub-model calls opened `depth` levels deep), and one
edge per value a box reads, labelled with the value's type (a value read twice, as a
residual connection is, has two edges)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dualnet.diagnostics import SourceCache, Span
from dualnet.graph.summary import number
from dualnet.graph.walk import FirstUse, Sizes, callee_env, layer_of, sites, sized
from dualnet.ir.graph import Graph, Node


@dataclass(frozen=True)
class Box:
    id: str  # "n0", "n1", ... in the order the forward runs
    kind: str  # input | output | layer | model | op
    title: str  # the layer's or sub-model's path, the op, the input's or output's name
    detail: str  # the layer's op, the sub-model's name, the input's or output's type
    params: int | None  # layers and sub-models: trainable parameters (first use)
    where: str  # its source: "file:line: text"

    @property
    def lines(self) -> list[str]:
        extra = [f"{number(self.params)} params"] if self.params else []
        return [self.title, *([self.detail] if self.detail else []), *extra]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str  # the value's type, as the checker prints it


@dataclass
class Picture:
    title: str
    boxes: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def picture(summary, depth: int, dims: Sizes) -> Picture:
    """The picture of a checked summary (`dualnet.frontend.Summary`); sizes in `dims`
    replace the symbolic ones."""
    return _Builder(summary.sources, depth).build(summary, dims)


class _Builder:
    def __init__(self, sources: SourceCache, depth: int) -> None:
        self.sources, self.depth, self.first = sources, depth, FirstUse()

    def build(self, summary, dims: Sizes) -> Picture:
        graph = summary.graph
        self.out = Picture(f"{summary.model} ({summary.file})")
        made: dict[int, str] = {}  # value id → the box that makes it
        for value in graph.inputs:
            made[value.id] = self.box(
                "input", value.name, str(sized(value.type, dims)), None, value.span
            )
        self.enter(graph, made, 0, dims)
        labels = graph.output_labels()
        for label, value in zip(labels, graph.outputs, strict=True):
            box = self.box("output", label, str(sized(value.type, dims)), None, value.span)
            self.edge(made.get(value.id), box, value, dims)
        return self.out

    def enter(self, graph: Graph, made: dict[int, str], level: int, sizes: Sizes) -> None:
        """Boxes and edges for `graph`'s nodes; `made` maps its values to their boxes."""
        for node in graph.nodes:
            if node.kind == "constant":
                continue
            if node.kind == "call" and level < self.depth:
                inner = {
                    mine.id: made[given.id]
                    for given, mine in zip(node.inputs, node.callee.inputs, strict=True)
                    if given.id in made
                }
                self.enter(node.callee, inner, level + 1, callee_env(node, sizes))
                for given, mine in zip(node.outputs, node.callee.outputs, strict=True):
                    if mine.id in inner:
                        made[given.id] = inner[mine.id]
                continue
            box = self.node_box(graph, node, sizes)
            for value in node.inputs:
                self.edge(made.get(value.id), box, value, sizes)
            for value in node.outputs:
                made[value.id] = box

    def node_box(self, graph: Graph, node: Node, sizes: Sizes) -> str:
        if node.kind == "call":
            inside = sites(node.callee, callee_env(node, sizes))
            params = sum(self.first.params(layer_of(g, n)) for g, n, _ in inside)
            child = graph.instance.child(node.target)
            return self.box("model", child.path, node.op, params, node.span)
        layer = layer_of(graph, node)
        if layer is not None:
            return self.box("layer", layer.path, node.op, self.first.params(layer), node.span)
        return self.box("op", node.op, "", None, node.span)

    def box(self, kind: str, title: str, detail: str, params, span: Span | None) -> str:
        box = Box(f"n{len(self.out.boxes)}", kind, title, detail, params, self.where(span))
        self.out.boxes.append(box)
        return box.id

    def edge(self, source: str | None, target: str, value, sizes: Sizes) -> None:
        if source is None:  # a constant's value
            return
        edge = Edge(source, target, str(sized(value.type, sizes)))
        if edge not in self.out.edges:  # `x + x`: one edge
            self.out.edges.append(edge)

    def where(self, span: Span | None) -> str:
        if span is None or not span.line:
            return ""
        text = (self.sources.line(span.file, span.line) or "").strip()
        return f"{span.file}:{span.line}: {text}"
