"""Helpers that write Python source for any backend's lowering table: number literals,
bracketing, per-axis arguments, defaults left out, keyword lists, Python indexing, which
runtime helpers a generated file needs (the rows themselves: `rows.py`). They only
produce strings and never import a framework; what differs between backends (how a number
becomes a tensor) is passed in.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dualnet.backends.common.source_code import global_names
from dualnet.ir.tagged import Tagged, Written
from dualnet.ir.types import DType
from dualnet.ops import REGISTRY


@dataclass
class NodeCall:
    """One node as a lowering sees it.

    `inputs`: the Python source of each tensor argument by signature name (a list for a
    "tensors" argument, None for an absent optional one); a scalar constant may arrive as a
    number literal ("2.0"). `attrs`: the node's attributes as the op's shape rule normalised
    them; for a layer call, the layer's resolved config merged with the node's attributes
    (`{**layer.attrs, **node.attrs}`, what the NumPy reference receives): Conv calls read their
    padding from it. `in_types`/`out_types`: TensorTypes; `in_types` may be empty for a
    one-input function lowered as a Sequential step (rows then use `out_types`). `fmt`:
    formats an attribute value (int, float, str, tuple, tagged or symbolic size) as Python
    source. `numbers`: the inputs whose source is a plain number, not a tensor, in the
    generated code (a hyperparameter, a constant or a size: the value of a constant node);
    number literals need not be listed (`is_number`).
    """

    inputs: dict[str, str | list[str] | None]
    attrs: dict[str, Any]
    in_types: dict[str, Any]
    out_types: list[Any]
    fmt: Callable[[Any], str]
    numbers: frozenset[str] = frozenset()


TensorSource = Callable[[Any, str], str]
"""A backend's `(call, input name) -> source`, writing a number literal as a tensor."""


def literal(src: Any) -> int | float | None:
    """The number a source string spells, if it is a number literal."""
    if not isinstance(src, str):
        return None
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_number(call: NodeCall, name: str) -> bool:
    """Whether input `name` is a plain number in the generated code (a literal, a
    hyperparameter, a constant or a size), which a framework function may not take where it
    wants a tensor (`torch.log(2.0)`)."""
    return name in call.numbers or literal(call.inputs[name]) is not None


def _expression(src: str) -> ast.expr | None:
    try:
        return ast.parse(src.strip(), mode="eval").body
    except (SyntaxError, RecursionError):
        return None


def reads_self(src: str) -> bool:
    """Whether `src` reads an attribute of `self` (`self.fc.kernel`, `getattr(self, "__w")`,
    `self.h[0].weight`): in generated Keras code, a variable rather than a tensor."""
    node = _expression(src)
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        node = node.args[0] if node.func.id == "getattr" else None
    return isinstance(node, ast.Name) and node.id == "self" and src.strip() != "self"


def atom(src: str, node: ast.expr | None = None) -> str:
    """`src` (parsed: `node`), parenthesised unless it is a primary expression (name,
    attribute, call, subscript, non-negative number) that an operator or `.method` cannot
    split."""
    node = node or _expression(src)
    if node is None:
        return f"({src})"
    if isinstance(node, ast.Name | ast.Attribute | ast.Call | ast.Subscript):
        return src
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
        and node.value >= 0
    ):
        return src
    return f"({src})"


# Python's left-associative binary operators, by precedence level.
_LEVELS = [
    (("+", "-"), (ast.Add, ast.Sub)),
    (("*", "/", "//", "%", "@"), (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.MatMult)),
]
_SAME_LEVEL = {symbol: ops for symbols, ops in _LEVELS for symbol in symbols}


def left_operand(src: str, symbol: str) -> str:
    """`src` as the left operand of the binary operator `symbol`: without brackets when it
    is itself an operation of the same left-associative level (`a + b` in `a + b - c`), so a
    long chain stays flat (Python refuses 200 nested brackets); else as `atom` writes it."""
    node = _expression(src)
    same = _SAME_LEVEL.get(symbol)
    if same is not None and isinstance(node, ast.BinOp) and isinstance(node.op, same):
        return src
    return atom(src, node)


def sizes(values, fmt) -> str:
    """A per-axis tuple as PyTorch and Keras take it: one value when all are equal
    (kernel_size=3)."""
    values = tuple(values)
    texts = {fmt(v) for v in values}  # equal values written alike (`k`, not `k[0]`, `k[1]`)
    return texts.pop() if len(texts) == 1 else fmt(values)


def reshape_sizes(dims, fmt) -> list[str]:
    """The sizes of a reshape target: the last symbolic one follows from the element count
    (-1), and is never formatted (the class writing it may have no expression for it)."""
    dims = list(dims)
    symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    inferred = symbolic[-1] if symbolic else None
    return [fmt(-1) if i == inferred else fmt(d) for i, d in enumerate(dims)]


def axes_arg(axes, fmt) -> str:
    """A `dim=` / `axis=` value: one axis (an int or a 1-tuple) or a tuple."""
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return fmt(axes[0]) if len(axes) == 1 else fmt(axes)


def is_default(value, default) -> bool:
    """Whether an argument can be left out: equal to the framework's default, and a literal —
    a Tagged size or Written value (an expression over hyperparameters, e.g. `stride`) is
    always written, even where this instance's value happens to be the default."""
    items = value if isinstance(value, tuple) else (value,)
    return value == default and not any(isinstance(v, Tagged | Written) for v in items)


def default_literal_dtype(attrs: dict) -> bool:
    """Whether a `tensor` literal's dtype is its framework's own choice: f32 of float numbers
    (PyTorch's default dtype, Keras's floatx), so a float64 run of the model follows them."""

    def floats(data) -> bool:
        return any(floats(d) for d in data) if isinstance(data, tuple) else isinstance(data, float)

    return attrs["dtype"] == DType.f32 and floats(attrs["data"])


def kwargs(*pairs: tuple[str, str | None]) -> str:
    """`, key=value` for each pair whose value is not None."""
    return "".join(f", {k}={v}" for k, v in pairs if v is not None)


def default_kw(call: NodeCall, attr: str, keyword: str, default) -> tuple[str, str | None]:
    """A `kwargs` pair for attribute `attr`: None where it is the framework's `default`."""
    value = call.attrs[attr]
    return keyword, None if is_default(value, default) else call.fmt(value)


def result_dtype(call: NodeCall) -> DType:
    """The element type of x for ops whose result keeps it (in_types may be empty when the
    emitter lowers a function child of a Sequential)."""
    return call.out_types[0].dtype if call.out_types else call.in_types["x"].dtype


def need(attrs: dict, key: str, why: str):
    """`attrs[key]`; a KeyError saying `why` it is needed when missing."""
    if key not in attrs:
        raise KeyError(f"{why} needs `{key}`")
    return attrs[key]


def pad_value(call: NodeCall, value: float) -> str:
    """A padding value as a literal of the result's element type."""
    dtype = result_dtype(call)
    if dtype == DType.bool:
        return call.fmt(bool(value))
    return call.fmt(int(value) if dtype.is_int else value)


def last_axis(call: NodeCall) -> int:
    """Attribute `axis`, or -1 where it is the result's last axis (softmax's usual spelling)."""
    axis = call.attrs["axis"]
    return -1 if call.out_types and axis == call.out_types[0].rank - 1 else axis


def operands(call: NodeCall, op: str, tensor: TensorSource) -> tuple[str, str]:
    """The two tensor inputs' sources of binary `op`; of two numbers the first becomes a
    tensor (of its type), so that the result is one."""
    left, right = (p.name for p in REGISTRY[op].signature.params if p.is_tensor)
    a, b = call.inputs[left], call.inputs[right]
    if is_number(call, left) and is_number(call, right):
        a = tensor(call, left)
    return a, b


def getitem(call: NodeCall, tensor: TensorSource) -> str:
    """`x[...]` in Python's indexing, which both PyTorch and Keras tensors take; leading
    `0`s, whole-axis stops and trailing `:`s are left out."""
    x_type = call.in_types.get("x")
    shape = x_type.shape if x_type is not None else None  # unknown: write every stop
    fmt = call.fmt
    parts, axis = [], -1
    for item in call.attrs["items"]:
        if item[0] == "new":
            parts.append("None")
            continue
        axis += 1
        if item[0] == "index":
            parts.append(fmt(item[1]))
            continue
        _, start, stop, step = item
        # a bound written as an expression (`start + 2`) stays, even where this instance's
        # value happens to be the default
        whole = shape is not None and stop == shape[axis] and not isinstance(stop, Tagged)
        bounds = ["" if is_default(start, 0) else fmt(start), "" if whole else fmt(stop)]
        parts.append(slice_text(bounds if step == 1 else [*bounds, fmt(step)]))
    while parts and parts[-1] == ":":
        parts.pop()
    if not parts:
        return tensor(call, "x")
    return f"{atom(tensor(call, 'x'))}[{', '.join(parts)}]"


def slice_text(parts: list[str]) -> str:
    """`a:b` or `a:b:c` as ruff format spaces it: a colon between bounds that are not all
    plain names or numbers gets a space on each side that has a bound (`s.a : s.b`, `: n`)."""
    if all(re.fullmatch(r"-?\w+", p) for p in parts if p):
        return ":".join(parts)
    text = parts[0]
    for before, after in zip(parts, parts[1:], strict=False):
        text += (" " if before else "") + ":" + (" " + after if after else "")
    return text


def helpers_used(source: str, helpers: dict[str, str]) -> list[str]:
    """The runtime helpers of `helpers` (name → source) that the Python `source` reads (its
    syntax tree's names: never text in a string or comment), with the helpers those read, in
    `helpers` order."""
    found: set[str] = set()
    todo = [source]
    while todo:
        for name in global_names(todo.pop()):
            if name in helpers and name not in found:
                found.add(name)
                todo.append(helpers[name])
    return [name for name in helpers if name in found]
