"""The rows the Python-source backends (PyTorch, Keras) share, written once: a backend's
table is `shared_rows(its Dialect)` with only the rows that differ overridden (sqlglot's
dialects override the rows of a base generator the same way).

A `Dialect` is what the shared rows need to know of a backend: how a number input becomes a
tensor, how a dtype is spelt, the framework's name of each function, which ops are tensor
methods (`x.chunk(2, dim=1)`) rather than functions (`ops.split(x, 2, axis=1)`), the axis
keyword, and the framework's defaults that decide what is left out. This module only writes
strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dualnet.backends.common.source_helpers import (
    NodeCall,
    TensorSource,
    atom,
    default_kw,
    getitem,
    is_number,
    kwargs,
    last_axis,
    left_operand,
    operands,
)
from dualnet.backends.rows import FunctionRow, Row
from dualnet.ir.types import DType
from dualnet.ops.elementwise import BINARY_SYMBOLS as OPERATORS

UNARY = (
    *("relu", "relu6", "hardsigmoid", "hardswish", "mish", "sigmoid", "tanh", "silu"),
    *("exp", "log", "sqrt", "rsqrt", "sin", "cos", "erf", "abs", "round", "floor"),
)
BINARY_SYMBOLS = {op: symbol for symbol, op in OPERATORS.items()}  # op → Python operator


@dataclass(frozen=True)
class Dialect:
    """`tensor(call, name)`: input `name` as a tensor (a number becomes one). `dtype`: a
    DType as source. `functions`: op → the framework's function (`torch.exp`, `ops.exp`).
    `methods`: op → the tensor method a backend writes instead (`chunk` for split). `axis`:
    the axis keyword (`dim`, `axis`). `leaky_slope`: leaky_relu's default slope."""

    tensor: TensorSource
    dtype: Callable[[DType], str]
    functions: dict[str, str]
    methods: dict[str, str] = field(default_factory=dict)
    axis: str = "axis"
    leaky_slope: float = 0.01

    def apply(self, op: str, call: NodeCall, *args: str) -> str:
        """Op `op` on input x and `args`: `x.method(args)` or `function(x, args)`."""
        x = self.tensor(call, "x")
        if op in self.methods:
            return f"{atom(x)}.{self.methods[op]}({', '.join(args)})"
        return f"{self.functions[op]}({', '.join((x, *args))})"


def shared_rows(d: Dialect) -> dict[str, Row]:
    """The rows every Python-source backend writes alike but for `d`'s spellings."""

    def unary(op: str) -> Callable[[NodeCall], str]:
        return lambda call: f"{d.functions[op]}({d.tensor(call, 'x')})"

    def binary(op: str) -> Callable[[NodeCall], str]:
        symbol = BINARY_SYMBOLS[op]

        def lower(call: NodeCall) -> str:
            a, b = operands(call, op, d.tensor)  # two numbers: a tensor result
            return f"{left_operand(a, symbol)} {symbol} {atom(b)}"

        return lower

    def leaky_relu(call: NodeCall) -> str:
        slope = default_kw(call, "slope", "negative_slope", d.leaky_slope)
        return f"{d.functions['leaky_relu']}({d.tensor(call, 'x')}{kwargs(slope)})"

    def elu(call: NodeCall) -> str:
        alpha = kwargs(default_kw(call, "alpha", "alpha", 1.0))
        return f"{d.functions['elu']}({d.tensor(call, 'x')}{alpha})"

    def neg(call: NodeCall) -> str:
        return f"-{atom(d.tensor(call, 'x'))}"

    def where(call: NodeCall) -> str:
        a = call.inputs["a"]
        if is_number(call, "a") and is_number(call, "b"):
            a = d.tensor(call, "a")  # two numbers would give the framework's default dtype
        return f"{d.functions['where']}({d.tensor(call, 'cond')}, {a}, {call.inputs['b']})"

    def cast(call: NodeCall) -> str:
        return d.apply("cast", call, d.dtype(call.attrs["dtype"]))

    def stop_gradient(call: NodeCall) -> str:
        return d.apply("stop_gradient", call)

    def softmax(op: str) -> Callable[[NodeCall], str]:
        def lower(call: NodeCall) -> str:
            axis = call.fmt(last_axis(call))
            return f"{d.functions[op]}({d.tensor(call, 'x')}, {d.axis}={axis})"

        return lower

    def transpose(call: NodeCall) -> str:
        fmt = call.fmt
        return d.apply("transpose", call, fmt(call.attrs["a"]), fmt(call.attrs["b"]))

    def permute(call: NodeCall) -> str:
        axes = call.attrs["axes"]
        if not axes:
            return d.tensor(call, "x")
        if "permute" in d.methods:  # x.permute(0, 2, 1): the axes as arguments
            return d.apply("permute", call, *(call.fmt(a) for a in axes))
        return d.apply("permute", call, call.fmt(tuple(axes)))

    def joined(op: str) -> Callable[[NodeCall], str]:
        def lower(call: NodeCall) -> str:  # concat, stack: a list of tensors and an axis
            xs = ", ".join(call.inputs["xs"])
            return f"{d.functions[op]}([{xs}], {d.axis}={call.fmt(call.attrs['axis'])})"

        return lower

    def roll(call: NodeCall) -> str:
        shift, axis = call.attrs["shift"], call.attrs["axis"]
        if len(axis) == 1:  # one axis: plain ints
            shift, axis = shift[0], axis[0]
        return f"{d.functions['roll']}({d.tensor(call, 'x')}, {call.fmt(shift)}, {call.fmt(axis)})"

    def split(call: NodeCall) -> str:
        n = call.attrs["n"]
        if n == 1:
            return d.tensor(call, "x")
        # divisible sizes: n equal parts (also on a size-0 axis)
        return d.apply("split", call, call.fmt(n), f"{d.axis}={call.fmt(call.attrs['axis'])}")

    def unsqueeze(call: NodeCall) -> str:
        return d.apply("unsqueeze", call, call.fmt(call.attrs["axis"]))

    rows: dict[str, Callable[[NodeCall], str]] = {
        **{op: unary(op) for op in UNARY},
        **{op: binary(op) for op in BINARY_SYMBOLS},
        "leaky_relu": leaky_relu,
        "elu": elu,
        "neg": neg,
        "where": where,
        "cast": cast,
        "stop_gradient": stop_gradient,
        "softmax": softmax("softmax"),
        "log_softmax": softmax("log_softmax"),
        "transpose": transpose,
        "permute": permute,
        "concat": joined("concat"),
        "stack": joined("stack"),
        "roll": roll,
        "split": split,
        "unsqueeze": unsqueeze,
        "getitem": lambda call: getitem(call, d.tensor),
    }
    return {op: FunctionRow(lower) for op, lower in rows.items()}
