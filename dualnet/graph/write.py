"""`dualnet graph`: write a checked model's picture as .svg, .png or .dot."""

from __future__ import annotations

from pathlib import Path

from dualnet.diagnostics import error, option
from dualnet.graph.dot import dot
from dualnet.graph.picture import picture
from dualnet.graph.walk import Sizes
from dualnet.io.files import atomic_write, check_output
from dualnet.ir.sizes import require_positive_sizes

FORMATS = (".svg", ".png", ".dot")


def write_graph(summary, path: str, depth: int, dims: Sizes) -> None:
    """Draw the checked `summary` (sub-model calls opened `depth` levels deep,
    the symbolic sizes in `dims` replaced) to `path`, by its suffix; E-INPUT for another
    suffix, a negative depth or sizes too small for the model, E-EXTRA when .svg or .png
    lacks the `graph` extra."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise error(
            "E-INPUT",
            f"cannot draw to {path}: the output must end in .svg, .png or .dot",
            option("-o"),
            notes=["the suffix picks the format"],
        )
    if depth < 0:
        raise error("E-INPUT", f"--depth {depth}: expected 0 or more", option("--depth"))
    require_positive_sizes(summary.graph, dims, "--dims")
    check_output(path, summary.files)  # before the work
    pic = picture(summary, depth, dims)
    if suffix == ".dot":
        data = dot(pic).encode()
    else:
        from dualnet.graph.layout import place

        placed = place(pic)
        if suffix == ".svg":
            from dualnet.graph.svg import svg

            data = svg(pic, placed).encode()
        else:
            from dualnet.graph.png import png

            data = png(pic, placed)
    atomic_write(path, data, summary.files)
