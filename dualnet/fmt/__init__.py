"""`dualnet fmt`: .dnet source in one canonical layout (docs/formatting.md)."""

from __future__ import annotations

from dualnet.fmt.doc import render
from dualnet.fmt.layout import Layout
from dualnet.syntax.parser import parse_with_tree

__all__ = ["format_source"]


def format_source(text: str, path: str) -> str:
    """`text` (the source of the file `path`) in the canonical layout; DualnetError (the
    parser's diagnostic) when it does not parse."""
    _, tree = parse_with_tree(text, path)
    return render(Layout(text, tree).document())
