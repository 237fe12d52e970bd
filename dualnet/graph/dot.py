"""A picture as Graphviz DOT text (no layout of dualnet's own: Graphviz lays it out)."""

from __future__ import annotations

from dualnet.graph.picture import Picture
from dualnet.graph.svg import FILL, printable

SHAPE = {"op": 'box, style="rounded,dashed,filled"', "model": "box3d, style=filled"}


def dot(pic: Picture) -> str:
    """`pic` as a `digraph`: boxes with their lines as labels and their source as tooltips,
    edges labelled with the values' types."""
    out = [
        f"digraph {_q(pic.title)} {{",
        f"  graph [rankdir=TB, label={_q(pic.title)}, labelloc=t];",
        '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
        '  edge [fontname="monospace", fontsize=9];',
    ]
    for box in pic.boxes:
        shape = f", shape={SHAPE[box.kind]}" if box.kind in SHAPE else ""
        out.append(
            f"  {box.id} [label={_q(chr(10).join(box.lines))}, tooltip={_q(box.where)}, "
            f'fillcolor="{FILL[box.kind]}"{shape}];'
        )
    for edge in pic.edges:
        out.append(f"  {edge.source} -> {edge.target} [label={_q(edge.label)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _q(text: str) -> str:
    """A DOT quoted string: `printable`, backslashes and quotes escaped, newlines as `\\n`."""
    escaped = printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
