"""The source text of runtime helpers, read from the modules of `backends/runtime/`.

Those modules are the code generated files carry: each top-level function or class is one
helper, pasted by name into the files that use it (`source_helpers.helpers_used` adds the
helpers it reads). dualnet reads them with `ast` and never imports them, so checking and
emitting never import a framework.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from types import MappingProxyType

RUNTIME = Path(__file__).with_name("runtime")
"""The folder of the runtime modules."""


@cache
def helper_sources(path: Path) -> MappingProxyType[str, str]:
    """Each top-level function and class of the Python file at `path` by name, in file
    order: its exact text, from its first decorator's line to its last line, with a final
    newline. A ValueError for any other top-level statement than the docstring and imports
    (a generated file would lack what it defines or runs)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    helpers: dict[str, str] = {}
    for i, node in enumerate(ast.parse(text, str(path)).body):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            helpers[node.name] = "\n".join(lines[start - 1 : node.end_lineno]) + "\n"
        elif not (isinstance(node, ast.Import | ast.ImportFrom) or (i == 0 and _docstring(node))):
            raise ValueError(f"{path}:{node.lineno}: a runtime module holds only definitions")
    return MappingProxyType(helpers)


def _docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
