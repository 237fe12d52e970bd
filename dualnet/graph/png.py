"""A laid-out picture as PNG, drawn with matplotlib (its Agg canvas; no pyplot state)."""

from __future__ import annotations

import io

from dualnet.graph.layout import LINE_H, PAD, Placed
from dualnet.graph.picture import Picture
from dualnet.graph.svg import FILL

DPI = 100
POINTS = 72 / DPI  # a pixel in points


def png(pic: Picture, placed: Placed) -> bytes:
    """The PNG image of `pic` laid out as `placed`, one pixel per SVG unit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    figure = Figure(figsize=(placed.width / DPI, placed.height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, placed.width)
    ax.set_ylim(placed.height, 0)  # y down, as in SVG
    ax.axis("off")
    for edge, route, at in zip(pic.edges, placed.routes, placed.labels, strict=True):
        xs, ys = zip(*route, strict=True)
        ax.plot(xs, ys, color="#666666", linewidth=1.2 * POINTS * 2)
        ax.annotate("", route[-1], route[-2], arrowprops={"arrowstyle": "-|>", "color": "#666666"})
        if at is None:
            continue
        ax.text(
            *at,
            edge.label,
            fontsize=10 * POINTS,
            family="monospace",
            parse_math=False,
            color="#555555",
        )
    for box in pic.boxes:
        x, y, w, h = placed.boxes[box.id]
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=6",
                facecolor=FILL[box.kind],
                edgecolor="#444444",
                linewidth=(2.5 if box.kind == "model" else 1) * POINTS * 2,
                linestyle="--" if box.kind == "op" else "-",
            )
        )
        for i, line in enumerate(box.lines):
            ax.text(
                x - w / 2 + PAD,
                y - h / 2 + PAD / 2 + LINE_H * (i + 1) - 4,
                line,
                fontsize=12 * POINTS,
                family="monospace",
                parse_math=False,
                weight="bold" if i == 0 else "normal",
            )
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
