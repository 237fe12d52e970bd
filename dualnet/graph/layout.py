"""Where each box and edge of a picture goes: grandalf's Sugiyama (layered) layout, top to
bottom, each connected part laid out on its own and placed left to right. Boxes are sized
from their text in a monospace font; every input is in the order the forward runs, so
the layout is the same on every run."""

from __future__ import annotations

from dataclasses import dataclass

from dualnet.graph.picture import Picture

CHAR_W, LINE_H, PAD = 7.2, 16.0, 8.0  # a 12px monospace font; padding inside a box
LABEL_W = 6.0  # a character of an edge's label (10px monospace)
GAP = 40.0  # between connected parts


@dataclass(frozen=True)
class Placed:
    """Box centres and sizes by box id, edge routes (points from source to target, in the
    picture's edge order), where each edge's label goes (None where an edge before it from
    the same box shows the same type: drawn once, under the box) and the drawing's width
    and height."""

    boxes: dict[str, tuple[float, float, float, float]]  # x, y (centre), w, h
    routes: list[list[tuple[float, float]]]
    labels: list[tuple[float, float] | None]
    width: float
    height: float


def size(lines: list[str]) -> tuple[float, float]:
    return max(len(t) for t in lines) * CHAR_W + 2 * PAD, len(lines) * LINE_H + PAD


class _View:
    def __init__(self, w: float = 0.0, h: float = 0.0) -> None:
        self.w, self.h, self.xy, self.path = w, h, (0.0, 0.0), []

    def setpath(self, points) -> None:
        self.path = list(points)


def place(pic: Picture) -> Placed:
    """Lay out `pic` (needs grandalf: the `graph` extra)."""
    from grandalf.graphs import Edge, Vertex, graph_core
    from grandalf.layouts import SugiyamaLayout

    vertices = {}
    for box in pic.boxes:
        vertices[box.id] = Vertex(box.id)
        vertices[box.id].view = _View(*size(box.lines))
    edges = []
    for e in pic.edges:
        edge = Edge(vertices[e.source], vertices[e.target])
        edge.view = _View()
        edges.append(edge)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    left, height = 0.0, 0.0
    for part in _parts(pic):
        ids = set(part)
        core = graph_core(
            [vertices[i] for i in part],
            [x for x, e in zip(edges, pic.edges, strict=True) if e.source in ids],
        )
        layout = SugiyamaLayout(core)
        layout.xspace, layout.yspace = 24, 36
        layout.init_all(roots=[vertices[i] for i in part if not _incoming(pic, i)])
        layout.draw()
        x0 = min(vertices[i].view.xy[0] - vertices[i].view.w / 2 for i in part)
        y0 = min(vertices[i].view.xy[1] - vertices[i].view.h / 2 for i in part)
        for i in part:
            v = vertices[i].view
            boxes[i] = (v.xy[0] - x0 + left + GAP / 2, v.xy[1] - y0 + GAP / 2, v.w, v.h)
        shift = (left + GAP / 2 - x0, GAP / 2 - y0)
        for x, e in zip(edges, pic.edges, strict=True):
            if e.source in ids:
                x.view.path = [(px + shift[0], py + shift[1]) for px, py in x.view.path]
        left = max(b[0] + b[2] / 2 for b in boxes.values()) + GAP / 2
        height = max(height, *(b[1] + b[3] / 2 + GAP / 2 for b in boxes.values()))
    routes = [
        _clip(x.view.path, boxes[e.source], boxes[e.target])
        for x, e in zip(edges, pic.edges, strict=True)
    ]
    labels: list[tuple[float, float] | None] = []
    shown: set[tuple[str, str]] = set()
    width = left + GAP / 2
    for edge, route in zip(pic.edges, routes, strict=True):
        if (edge.source, edge.label) in shown:
            labels.append(None)
            continue
        above = sum(source == edge.source for source, _ in shown)  # another output's type
        shown.add((edge.source, edge.label))
        x, y = route[0][0] + 4, route[0][1] + 12 + 11 * above
        labels.append((x, y))
        width = max(width, x + len(edge.label) * LABEL_W + PAD)
    return Placed(boxes, routes, labels, width, height)


def _incoming(pic: Picture, box: str) -> bool:
    return any(e.target == box for e in pic.edges)


def _parts(pic: Picture) -> list[list[str]]:
    """The connected parts, each in box order, ordered by their first box."""
    parent = {b.id: b.id for b in pic.boxes}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for e in pic.edges:
        a, b = root(e.source), root(e.target)
        if a != b:
            parent[max(a, b, key=_order)] = min(a, b, key=_order)
    parts: dict[str, list[str]] = {}
    for b in pic.boxes:
        parts.setdefault(root(b.id), []).append(b.id)
    return list(parts.values())


def _order(box_id: str) -> int:
    return int(box_id[1:])


def _clip(points, source, target) -> list[tuple[float, float]]:
    """The route from the bottom of the source box to the top of the target box."""
    (sx, sy, _, sh), (tx, ty, _, th) = source, target
    middle = [tuple(p) for p in points[1:-1]]
    return [(sx, sy + sh / 2), *middle, (tx, ty - th / 2)]
