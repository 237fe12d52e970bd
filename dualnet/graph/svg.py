"""A picture as SVG text: one `<g class="box KIND">` per box (its source line in its
`<title>`, the tooltip), one `<g class="edge">` per edge with its type as `<text>`.
Deterministic: coordinates rounded to 0.1, boxes and edges in the picture's order."""

from __future__ import annotations

import re
from html import escape as _escape

from dualnet.graph.layout import LINE_H, PAD, Placed
from dualnet.graph.picture import Picture

FILL = {
    "input": "#d9f2d9",
    "output": "#d9f2d9",
    "layer": "#dbe8f7",
    "model": "#fbe3c8",
    "op": "#ffffff",
}
STYLE = (
    "text{font-family:monospace;font-size:12px;fill:#222}"
    " .type{font-size:10px;fill:#555}"
    " .edge polyline{fill:none;stroke:#666;stroke-width:1.2}"
    " .box rect{stroke:#444;stroke-width:1}"
    " .model rect{stroke-width:2.5}"
    " .op rect{stroke-dasharray:3 2}"
)


def svg(pic: Picture, placed: Placed) -> str:
    """The SVG document of `pic` laid out as `placed`."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(placed.width)}" '
        f'height="{_n(placed.height)}" viewBox="0 0 {_n(placed.width)} {_n(placed.height)}">',
        f"<title>{escape(pic.title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" '
        'markerWidth="8" markerHeight="8" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker></defs>',
        f"<style>{STYLE}</style>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
    ]
    titles = {b.id: b.title for b in pic.boxes}
    for edge, route, at in zip(pic.edges, placed.routes, placed.labels, strict=True):
        points = " ".join(f"{_n(x)},{_n(y)}" for x, y in route)
        tip = f"{titles[edge.source]} → {titles[edge.target]}: {edge.label}"
        out += [
            f'<g class="edge" data-source="{edge.source}" data-target="{edge.target}" '
            f'data-type="{escape(edge.label)}">',
            f"<title>{escape(tip)}</title>",
            f'<polyline points="{points}" marker-end="url(#arrow)"/>',
        ]
        if at is not None:
            out.append(
                f'<text class="type" x="{_n(at[0])}" y="{_n(at[1])}">{escape(edge.label)}</text>'
            )
        out.append("</g>")
    for box in pic.boxes:
        x, y, w, h = placed.boxes[box.id]
        left, top = x - w / 2, y - h / 2
        out += [
            f'<g class="box {box.kind}" id="{box.id}">',
            f"<title>{escape(box.where or box.title)}</title>",
            f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(w)}" height="{_n(h)}" rx="6" '
            f'fill="{FILL[box.kind]}"/>',
        ]
        for i, line in enumerate(box.lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            baseline = top + PAD / 2 + LINE_H * (i + 1) - 4
            out.append(
                f'<text x="{_n(left + PAD)}" y="{_n(baseline)}"{weight}>{escape(line)}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def escape(text: str) -> str:
    """`text` as XML character data or attribute value: `printable`, markup escaped."""
    return _escape(printable(text))


def printable(text: str) -> str:
    """`text` with the characters XML 1.0 cannot hold (control characters, which a source
    comment or a file name may contain) as U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _n(v: float) -> str:
    """A coordinate, rounded to 0.1 and written without a trailing `.0`."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text
