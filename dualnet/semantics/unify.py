"""Type annotations: evaluating dimension expressions and unifying them with actual types."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from dualnet.diagnostics import Span, error
from dualnet.ir.dims import (
    Dim,
    DimTooLarge,
    equal_everywhere,
    extremum,
    floordiv,
    mod,
    substitute,
    sym,
    symbols_of,
)
from dualnet.ir.types import DTYPES, SIZE_LIMIT, TensorType
from dualnet.ops.registry import suggest
from dualnet.syntax import ast

_fresh = itertools.count(1)

# A dimension pattern: a size expression over names (some maybe unbound), or None for `_`.
Pattern = int | Dim | None


VAR = "?"  # prefix of a pattern variable: an unbound name, kept apart from the actual's symbols


def dim_pattern(
    expr: ast.DimExpr, lookup: Callable[[str, Span], int | Dim | None], var_prefix: str = ""
) -> Pattern:
    """Evaluate a dimension expression; names that `lookup` doesn't know become symbols
    (named `var_prefix + name`)."""
    if isinstance(expr, ast.DimInt):
        return expr.value
    if isinstance(expr, ast.DimAny):
        return None
    if isinstance(expr, ast.DimName):
        known = lookup(expr.name, expr.span)
        if isinstance(known, tuple):
            raise error(
                "E-TYPE",
                f"`{expr.name}` is a tuple, not a size",
                expr.span,
                "a tuple",
                [f"index it: {expr.name}[0]"],
            )
        return sym(var_prefix + expr.name) if known is None else known
    if isinstance(expr, ast.DimIndex):
        return _element(expr, lookup(expr.name, expr.span))
    if isinstance(expr, ast.DimCall):
        return _extremum(expr, [dim_pattern(a, lookup, var_prefix) for a in expr.args])
    left = dim_pattern(expr.left, lookup, var_prefix)
    right = dim_pattern(expr.right, lookup, var_prefix)
    if left is None or right is None:
        raise error("E-TYPE", "`_` cannot be part of a dimension expression", expr.span)
    try:
        result = {
            "+": lambda: left + right,
            "-": lambda: left - right,
            "*": lambda: left * right,
            "//": lambda: floordiv(left, right),
            "%": lambda: mod(left, right),
        }[expr.op]()
    except ZeroDivisionError:
        raise error("E-VALUE", "division by zero in a dimension", expr.span) from None
    except DimTooLarge:
        raise DimTooLarge.at(expr.span) from None
    if isinstance(result, int) and abs(result) >= SIZE_LIMIT:
        raise error("E-LIMIT", "dimension exceeds 2**62", expr.span, "too large")
    return result


def _element(expr: ast.DimIndex, value) -> int | Dim:
    """`name[i]` of a tuple hyperparameter or constant whose items are sizes."""
    if not isinstance(value, tuple | list):
        shown = "not defined" if value is None else "not a tuple"
        raise error("E-TYPE", f"`{expr.name}` is {shown}", expr.span, f"cannot index `{expr.name}`")
    if not 0 <= expr.index < len(value):
        raise error(
            "E-VALUE",
            f"index {expr.index} is out of range for `{expr.name}` of {len(value)} items",
            expr.span,
            "out of range",
        )
    item = value[expr.index]
    if isinstance(item, bool) or not isinstance(item, int | Dim):
        raise error("E-TYPE", f"`{expr.name}[{expr.index}]` is not a size", expr.span)
    return item


def _extremum(expr: ast.DimCall, args: list[Pattern]) -> int | Dim:
    """`max(...)`/`min(...)` of sizes, decided for every value of their symbols."""
    if expr.func not in ("max", "min"):
        raise error(
            "E-TYPE",
            f"`{expr.func}(...)` is not a dimension",
            expr.span,
            "not max or min",
            ["dimension expressions use + - * // %, max(...), min(...) and tuple[i]"],
        )
    if any(a is None for a in args):
        raise error("E-TYPE", "`_` cannot be part of a dimension expression", expr.span)
    result = extremum(expr.func, args)
    if result is None:
        raise undecided_extremum(expr.func, args, expr.span)
    return result


def undecided_extremum(func: str, args: list, span: Span):
    """E-CONST for `max(H, 7)`: which size is larger depends on the symbols' values."""
    shown = ", ".join(_unmark(a) for a in args)
    return error(
        "E-CONST",
        f"cannot decide `{func}({shown})` at compile time",
        span,
        "depends on symbolic dimensions",
        [
            "max/min of sizes must hold for every size (≥ 1) of their symbols, "
            "as `max(H, 1)` or `max(2 * H + 6, 7)` do",
            "give the dimension a concrete size in the forward signature",
        ],
    )


def tensor_pattern(texpr: ast.TypeExpr, lookup, var_prefix: str = "") -> tuple[str, list[Pattern]]:
    if not isinstance(texpr, ast.TensorTypeExpr):
        raise error("E-TYPE", "expected a tensor type such as f32[B, 3, H, W]", texpr.span)
    if texpr.dtype not in DTYPES:
        hint = suggest(texpr.dtype, DTYPES)
        raise error(
            "E-TYPE",
            f"unknown element type `{texpr.dtype}`",
            texpr.span,
            "not a dtype",
            [f"did you mean `{hint}`?" if hint else "element types are " + ", ".join(DTYPES)],
        )
    dims = [dim_pattern(d, lookup, var_prefix) for d in texpr.dims]
    for d, pat in zip(texpr.dims, dims, strict=True):
        if isinstance(pat, int) and pat < 0:
            raise error("E-VALUE", f"negative dimension {pat}", d.span)
        if isinstance(pat, int) and pat == 0:
            raise error(
                "E-SHAPE",
                "a zero-sized dimension",
                d.span,
                "size 0",
                ["dualnet tensors have no zero-sized axes"],
            )
    return texpr.dtype, dims


def fresh_type(texpr: ast.TypeExpr, lookup) -> TensorType:
    """The type of an entry-model input: unknown names become symbolic dims, `_` a fresh one."""
    dtype, dims = tensor_pattern(texpr, lookup)
    shape = tuple(sym(f"_{next(_fresh)}") if d is None else d for d in dims)
    return TensorType(DTYPES[dtype], shape)


def unify(
    texpr: ast.TypeExpr,
    actual: TensorType,
    env: dict[str, int | Dim],
    lookup,
    code: str,
    span: Span,
    what: str,
) -> None:
    """Match `actual` against the annotation, binding unbound dimension names into `env`.
    Unbound names are pattern variables (`?H`), so an actual size that mentions a symbol of
    the same name (the caller's `H`) is never confused with them."""
    try:
        _unify(texpr, actual, env, lookup, code, span, what)
    except DimTooLarge:
        raise DimTooLarge.at(span) from None


def _unify(
    texpr: ast.TypeExpr,
    actual: TensorType,
    env: dict[str, int | Dim],
    lookup,
    code: str,
    span: Span,
    what: str,
) -> None:
    def lookup_env(name: str, s: Span):
        return env[name] if name in env else lookup(name, s)

    dtype, dims = tensor_pattern(texpr, lookup_env, VAR)
    shown = _show_pattern(texpr)
    if DTYPES[dtype] != actual.dtype:
        raise error(
            code,
            f"{what} is declared {shown} but is {actual}",
            span,
            f"element type {dtype} vs {actual.dtype}",
        )
    if len(dims) != actual.rank:
        raise error(
            code,
            f"{what} is declared {shown} but is {actual}",
            span,
            f"rank {len(dims)} vs {actual.rank}",
        )
    pending = [(axis, pat) for axis, pat in enumerate(dims) if pat is not None]
    while pending:  # names bind first; expressions over them are solved or checked after
        later = []
        for axis, pat in pending:
            pat = substitute(pat, {VAR + k: v for k, v in env.items()})
            free = {name for name in symbols_of(pat) if name.startswith(VAR)}
            here = actual.shape[axis]
            if not free:
                if pat != here and not equal_everywhere(pat, here):
                    raise error(
                        code,
                        f"{what} is declared {shown} but is {actual}",
                        span,
                        f"dimension {axis}: {pat} vs {here}",
                    )
            elif not (len(free) == 1 and _solve(pat, free.pop(), here, env)):
                later.append((axis, pat))
        if len(later) == len(pending):
            axis, pat = later[0]
            raise error(
                code,
                f"cannot infer the dimensions of {shown} from {actual}",
                span,
                f"dimension {axis}: cannot solve {_unmark(pat)} = {actual.shape[axis]}",
            )
        pending = later


def _unmark(pat) -> str:
    return str(pat).replace(VAR, "")


def _solve(pat: Dim, var: str, actual, env) -> bool:
    """Bind pattern variable `var` so that `pat == actual`, for `k*var + c` (k dividing)."""
    poly = dict(pat.terms)
    k = poly.pop((var,), None)
    rest = Dim._make(poly)
    if k is None or var in symbols_of(rest):
        return False
    target = actual - rest
    value = floordiv(target, k)
    if value * k != target:
        return False
    env[var[len(VAR) :]] = value
    return True


def _show_pattern(texpr: ast.TensorTypeExpr) -> str:
    return f"{texpr.dtype}[{', '.join(_show_dim(d) for d in texpr.dims)}]"


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2}


def _show_dim(d: ast.DimExpr, parent: int = 0, right: bool = False) -> str:
    """A dimension expression as written, with the brackets its meaning needs."""
    if isinstance(d, ast.DimInt):
        return str(d.value)
    if isinstance(d, ast.DimName):
        return d.name
    if isinstance(d, ast.DimAny):
        return "_"
    if isinstance(d, ast.DimIndex):
        return f"{d.name}[{d.index}]"
    if isinstance(d, ast.DimCall):
        return f"{d.func}({', '.join(_show_dim(a) for a in d.args)})"
    prec = _PRECEDENCE[d.op]
    text = f"{_show_dim(d.left, prec)} {d.op} {_show_dim(d.right, prec, True)}"
    return f"({text})" if prec < parent or (right and prec == parent) else text
