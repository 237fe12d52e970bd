"""Sizes that remember where they came from.

A `Tagged` is an `int` that also carries an expression over the names of the model that owns
it — its hyperparameters and the dimension names its forward signature binds — such as
`out`, `c` or `4 * d`. It behaves as its integer value everywhere (shape rules, comparisons,
hashing, printing); arithmetic keeps the expression. Backends use the tag to write an
inferred size as code (`nn.Linear(4 * d, classes)`) rather than as the number one instance
happened to have.
"""

from __future__ import annotations

from collections.abc import Mapping

from dualnet.ir.dims import Dim, floordiv, substitute, sym


class Tagged(int):
    expr: int | Dim

    def __new__(cls, value: int, expr: int | Dim):
        obj = super().__new__(cls, value)
        obj.expr = expr
        return obj

    def __add__(self, other):
        return _combine(self, other, lambda a, b: a + b)

    def __radd__(self, other):
        return _combine(other, self, lambda a, b: a + b)

    def __sub__(self, other):
        return _combine(self, other, lambda a, b: a - b)

    def __rsub__(self, other):
        return _combine(other, self, lambda a, b: a - b)

    def __mul__(self, other):
        return _combine(self, other, lambda a, b: a * b)

    def __rmul__(self, other):
        return _combine(other, self, lambda a, b: a * b)

    def __floordiv__(self, other):
        return _combine(self, other, floordiv)

    def __rfloordiv__(self, other):
        return _combine(other, self, floordiv)

    def __neg__(self):
        return tagged(-int(self), -self.expr)


def expr_of(value) -> int | Dim | None:
    """The expression a size stands for: its tag, or the plain int itself."""
    if isinstance(value, Tagged):
        return value.expr
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return None


def tagged(value: int, expr: int | Dim):
    """A Tagged, or a plain int when the expression is just a number."""
    return int(value) if isinstance(expr, int) else Tagged(value, expr)


def tag_as(value, name: str):
    """`value` seen from inside a model, where it is called `name`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Tagged(int(value), sym(name))
    return value


def retag(value, env: Mapping[str, int | Dim]):
    """Move a size from a callee's scope to its caller's: `env` maps the callee's names to
    the caller's expressions for them."""
    if isinstance(value, Tagged):
        return tagged(int(value), substitute(value.expr, env))
    return value


def _combine(a, b, op):
    if isinstance(a, Dim) or isinstance(b, Dim) or isinstance(a, bool) or isinstance(b, bool):
        return NotImplemented
    if not isinstance(a, int) or not isinstance(b, int):
        return NotImplemented
    value = op(int(a), int(b))
    return tagged(value, op(expr_of(a), expr_of(b)))


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
