"""Sizes that remember where they came from.

A `Tagged` is an `int` that also carries an expression over the names of the model that owns
it — its hyperparameters and the dimension names its forward signature binds — such as
`out`, `c` or `4 * d`. It behaves as its integer value everywhere (shape rules, comparisons,
hashing, printing); arithmetic keeps the expression. Backends use the tag to write an
inferred size as code (`nn.Linear(4 * d, classes)`) rather than as the number one instance
happened to have.

A `TaggedDim` is the same for a symbolic size: inside a sub-model, a size is a `Dim` over the
entry model's names (`(H + 3) // 4`, what checking compares), and its tag says what it is in
the sub-model's own names (`H`, `(H + 1) // 2`): what generated code can compute from the
sub-model's own inputs. A size whose tag was lost (an operation that does not keep tags) is a
plain `Dim` and stands only for its value.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from dualnet.ir.dims import Dim, DimTooLarge, floordiv, substitute, sym


class Tagged(int):
    expr: int | Dim

    def __new__(cls, value: int, expr: int | Dim):
        obj = super().__new__(cls, value)
        obj.expr = expr
        return obj

    def __neg__(self):
        return tagged(-int(self), -self.expr)


class TaggedDim(Dim):
    """A symbolic size (its value, a Dim) that also carries its expression in the names of
    the model that owns it."""

    __slots__ = ("expr",)

    def __init__(self, value: Dim, expr: int | Dim):  # (the value's size, not a new one)
        self.terms, self._hash, self.size = value.terms, value._hash, value.size
        self.expr = expr

    def __neg__(self):
        return _with_tag(-untagged(self), -self.expr)


def _combine_dims(a, b, op):
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, int | Dim)
        or not isinstance(b, int | Dim)
    ):
        return NotImplemented
    ua, ub = untagged(a), untagged(b)
    value = op(ua, ub)
    ea, eb = expr_of(a), expr_of(b)
    if ea is None or eb is None:
        return value
    if ea == ua and eb == ub:  # the names are the values' own (the entry model's): no work
        return _with_tag(value, value)
    expr = _tag_expr(op, ea, eb)
    return value if expr is None else _with_tag(value, expr)


def _with_tag(value, expr):
    """`value` (an int or a Dim) tagged with `expr`."""
    if isinstance(value, Dim):
        return TaggedDim(value, expr)
    return tagged(value, expr)


def expr_of(value) -> int | Dim | None:
    """The expression a size stands for: its tag, or the plain int itself (None for a plain
    Dim: only its value is known)."""
    if isinstance(value, Tagged | TaggedDim):
        return value.expr
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return None


def tagged(value: int, expr: int | Dim):
    """A Tagged, or a plain int when the expression is just a number."""
    return int(value) if isinstance(expr, int) else Tagged(value, expr)


def untagged(value):
    """A size without its tag (a whole axis: the size the axis has, whatever it is called)."""
    if isinstance(value, Tagged):
        return int(value)
    if isinstance(value, TaggedDim):  # the same size, not a new one
        plain = Dim.__new__(Dim)
        plain.terms, plain._hash, plain.size = value.terms, value._hash, value.size
        return plain
    return value


def tag_as(value, name: str):
    """`value` seen from inside a model, where it is called `name`; the ints of a tuple are
    called `name[0]`, `name[1]`, ..."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Tagged(int(value), sym(name))
    if isinstance(value, Dim):
        return TaggedDim(untagged(value), sym(name))
    if isinstance(value, tuple):
        return tuple(
            tag_as(v, element(name, i)) if not isinstance(v, tuple) else v
            for i, v in enumerate(value)
        )
    return value


def element(name: str, index: int) -> str:
    """The name of a tuple's element in tags (`kernel[0]`)."""
    return f"{name}[{index}]"


def element_of(name: str) -> tuple[str, int] | None:
    """(tuple name, index) for an element's name, else None."""
    base, bracket, rest = name.partition("[")
    if bracket and rest.endswith("]") and rest[:-1].isdigit():
        return base, int(rest[:-1])
    return None


def outer_exprs(name: str, value, expr_of_value) -> dict:
    """The caller's expression for each name `value` is known by inside a model: `name`
    itself for a size, each element's name for a tuple of sizes."""
    if isinstance(value, tuple):
        out = {}
        for i, v in enumerate(value):
            if not isinstance(v, tuple):
                out.update(outer_exprs(element(name, i), v, expr_of_value))
        return out
    expr = expr_of_value(value)
    return {} if expr is None else {name: expr}


def retag(value, env: Mapping[str, int | Dim]):
    """Move a size from a callee's scope to its caller's: `env` maps the callee's names to
    the caller's expressions for them (a name it lacks, or an expression that would outgrow
    what a size may hold: the size keeps only its value)."""
    if isinstance(value, Tagged | TaggedDim):
        if isinstance(value.expr, Dim) and not value.expr.symbols() <= env.keys():
            return untagged(value)
        try:
            expr = substitute(value.expr, env)
        except DimTooLarge:
            return untagged(value)
        return _with_tag(untagged(value), expr)
    return value


def _tag_expr(op, a, b):
    """`op` on two tag expressions; None where the expression would outgrow what a size may
    hold (the value is then known only as itself)."""
    try:
        return op(a, b)
    except DimTooLarge:
        return None


def _combine(a, b, op):
    if isinstance(a, Dim) or isinstance(b, Dim):  # (Dim's reflected `//` would come back)
        return _combine_dims(a, b, op)
    if isinstance(a, bool) or isinstance(b, bool):
        return NotImplemented
    if not isinstance(a, int) or not isinstance(b, int):
        return NotImplemented
    value = op(int(a), int(b))
    expr = _tag_expr(op, expr_of(a), expr_of(b))
    return value if expr is None else tagged(value, expr)


def _arithmetic(cls, combine) -> None:
    """`+ - * //` on `cls` and their reflections, each through `combine(a, b, op)`, which
    keeps the tag."""
    for name, op in (
        ("add", operator.add),
        ("sub", operator.sub),
        ("mul", operator.mul),
        ("floordiv", floordiv),
    ):
        setattr(cls, f"__{name}__", lambda self, other, op=op: combine(self, other, op))
        setattr(cls, f"__r{name}__", lambda self, other, op=op: combine(other, self, op))


_arithmetic(Tagged, _combine)
_arithmetic(TaggedDim, _combine_dims)


class Written:
    """A float, string or bool argument that the source wrote as an expression (`p=dropout`):
    it keeps its value, and a backend writes `code` instead of the value."""

    code: str


class _WrittenFloat(Written, float):
    pass


class _WrittenStr(Written, str):
    pass


class _WrittenBool(Written, int):  # bool cannot be subclassed; 0/1 behave the same
    pass


def written(value, code: str):
    cls = {bool: _WrittenBool, float: _WrittenFloat, str: _WrittenStr}.get(type(value))
    if cls is None:
        return value
    obj = cls(value)
    obj.code = code
    return obj
