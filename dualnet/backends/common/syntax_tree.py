"""Reading the syntax tree for code generation: which names an expression or statement reads,
where a name is last read, and spans as lookup keys. Framework-independent."""

from __future__ import annotations

import dataclasses

from dualnet.diagnostics import Span
from dualnet.syntax import ast


def as_call(e: ast.Expr, args: list) -> ast.Call:
    """The call's arguments as written (a piped value counts as the first positional one)."""
    keywords = e.keywords if isinstance(e, ast.Call) else ()
    shown = [a if not isinstance(a, str) else ast.Literal(e.span, None) for a in args]
    return ast.Call(e.span, e.func if isinstance(e, ast.Call) else e, tuple(shown), keywords)


def dotted(e: ast.Attribute) -> str:
    """`lib.NAME` for a namespaced name."""
    return f"{e.value.id}.{e.name}" if isinstance(e.value, ast.Name) else e.name


def callee_name(func: ast.Expr) -> str | None:
    """The called name (`Conv2d`, or `BasicBlock` of `lib.BasicBlock`)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.name
    return None


def mentions(e: ast.Expr, names: set[str]) -> bool:
    """Whether an expression refers to any of `names`."""
    stack: list = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id in names:
            return True
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            items = value if isinstance(value, tuple) else (value,)
            stack.extend(
                x for x in items if dataclasses.is_dataclass(x) and not isinstance(x, Span)
            )
    return False


def names_in(node) -> list[str]:
    """Every name read anywhere below a statement or expression."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name):
            out.append(n.id)
            continue
        for f in dataclasses.fields(n):
            value = getattr(n, f.name)
            items = value if isinstance(value, tuple) else (value,)
            stack.extend(
                x
                for x in items
                if dataclasses.is_dataclass(x)
                and not isinstance(x, Span)
                and not (isinstance(n, ast.Assign) and f.name == "targets")
                and not (isinstance(n, ast.Annotated | ast.For) and f.name in ("target", "var"))
            )
    return out


def reads(stmt) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names_in(stmt):
        counts[name] = counts.get(name, 0) + 1
    return counts


def last_reads(body) -> dict[str, int]:
    """Each name → the index of the last top-level statement that reads it."""
    last: dict[str, int] = {}
    for i, stmt in enumerate(body):
        for name in reads(stmt):
            last[name] = i
    return last


def span_key(span: Span) -> tuple:
    return (span.file, span.line, span.column, span.end_line, span.end_column)


def inside(inner: Span | None, outer: Span) -> bool:
    if inner is None or inner.file != outer.file:
        return False
    return (inner.line, inner.column) >= (outer.line, outer.column) and (
        inner.end_line,
        inner.end_column,
    ) <= (outer.end_line, outer.end_column)
