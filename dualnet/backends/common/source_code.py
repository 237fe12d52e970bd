"""Reading generated Python source as Python: the global names it uses, and the check that
a file is exactly what an emitter writes before it reaches disk.

Imports and runtime helpers are chosen from the names the code really references (its
syntax tree: names in strings, comments and docstrings do not count), so a file imports and
defines what it uses and nothing else.
"""

from __future__ import annotations

import ast

from dualnet.diagnostics import error


def global_names(source: str) -> set[str]:
    """Every name `source` reads (generated locals never take a module-level name, so a
    name read is a global where one of that name exists)."""
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}


def validate(source: str, imports: set[str], span, registrations: set[str] = frozenset()) -> None:
    """The generated file compiles, and at its top level holds only its docstring, imports
    of `imports`, function and class definitions (decorated by names of `registrations`
    alone) and assignments of those registrations; class bodies hold only docstrings and
    methods, and no default value or decorator runs anything but plain values. A backend
    bug, or user text that slipped through, must never reach disk (`span`: the entry model,
    where an error is reported)."""
    try:
        tree = ast.parse(source)
        compile(tree, "<generated>", "exec")
    except (SyntaxError, ValueError) as exc:
        raise _internal(f"generated source does not compile ({exc})", span) from None
    for i, stmt in enumerate(tree.body):
        if i == 0 and _is_docstring(stmt):
            continue
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in stmt.names]
                if isinstance(stmt, ast.Import)
                else [stmt.module or ""]
            )
            for name in names:
                if name not in imports:
                    raise _internal(f"generated source imports {name}", span)
        elif isinstance(stmt, ast.Assign):
            targets = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            if len(targets) != 1 or targets[0] not in registrations:
                raise _internal("generated source runs a statement at import", span)
        elif isinstance(stmt, ast.FunctionDef | ast.ClassDef):
            _check_definition(stmt, registrations, span)
        else:
            raise _internal("generated source runs a statement at import", span)


def _check_definition(node: ast.FunctionDef | ast.ClassDef, registrations, span) -> None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and _plain(
            ast.Tuple([*decorator.args, *(k.value for k in decorator.keywords)], ast.Load())
        ):
            decorator = decorator.func
        if _dotted(decorator) not in {*registrations, *_METHOD_DECORATORS}:
            raise _internal("generated source has an unexpected decorator", span)
    if isinstance(node, ast.ClassDef):
        for base in node.bases:
            if not _plain(base):
                raise _internal("generated class has an unexpected base", span)
        for i, stmt in enumerate(node.body):
            if i == 0 and _is_docstring(stmt):
                continue
            if _is_field(stmt, node):
                continue
            if not isinstance(stmt, ast.FunctionDef):
                raise _internal("generated class body runs a statement", span)
            _check_definition(stmt, registrations, span)
        return
    for default in [*node.args.defaults, *node.args.kw_defaults]:
        if default is not None and not _plain(default):
            raise _internal("generated default value runs code", span)


_METHOD_DECORATORS = {"staticmethod", "classmethod", "property"}
_PLAIN = (
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Tuple,
    ast.List,
    ast.UnaryOp,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
    ast.Subscript,
    ast.Slice,
)


def _plain(expr: ast.expr) -> bool:
    """A value made of constants, names, attributes and operators (no call)."""
    return all(isinstance(n, _PLAIN) for n in ast.walk(expr))


def _dotted(expr: ast.expr) -> str | None:
    """`a.b.c` for a name or an attribute chain, else None."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        base = _dotted(expr.value)
        return None if base is None else f"{base}.{expr.attr}"
    return None


def _is_field(stmt: ast.stmt, cls: ast.ClassDef) -> bool:
    """A field of a NamedTuple class (`logits: torch.Tensor`): an annotation, no value."""
    return (
        isinstance(stmt, ast.AnnAssign)
        and stmt.value is None
        and isinstance(stmt.target, ast.Name)
        and [_dotted(b) for b in cls.bases] == ["NamedTuple"]
        and _plain(stmt.annotation)
    )


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _internal(message: str, span):
    return error("E-BACKEND", f"internal error: {message}", span)
