"""Element-wise ops: activations, unary math, arithmetic and comparisons (NumPy
broadcasting), where, clamp, cast and stop_gradient."""

from __future__ import annotations

import math

from dualnet.ir.types import DType, TensorType
from dualnet.ops.common import broadcast, fits_in, same_dtype
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, Use, register, sig


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return (0.5 * x * (1 + _erf(x / np.sqrt(2)))).astype(x.dtype)


def _hardsigmoid(x):
    return np.clip(x + 3, 0, 6) / 6


def _softplus(x, beta, threshold):
    return np.where(
        x * beta > threshold, x, np.log1p(np.exp(np.minimum(x * beta, threshold))) / beta
    ).astype(x.dtype)


# name: (reference, attribute parameters, input dtypes, differentiable, doc)
_UNARY = {
    "relu": (lambda x: np.maximum(x, 0), (), "float", True, "max(x, 0)"),
    "gelu": (
        lambda x, approximate: _gelu(x, approximate),
        (P("approximate", "str", "none", choices=("none", "tanh")),),
        "float",
        True,
        'x·Φ(x); approximate="tanh" uses the tanh formula',
    ),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (), "float", True, "1 / (1 + e^-x)"),
    "tanh": (lambda x: np.tanh(x), (), "float", True, "hyperbolic tangent"),
    "silu": (lambda x: x / (1 + np.exp(-x)), (), "float", True, "x·sigmoid(x)"),
    "leaky_relu": (
        lambda x, slope: np.where(x >= 0, x, x * slope).astype(x.dtype),
        (P("slope", "float", 0.01),),
        "float",
        True,
        "x if x ≥ 0 else slope·x",
    ),
    "elu": (
        lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype),
        (P("alpha", "float", 1.0),),
        "float",
        True,
        "x if x > 0 else alpha·(e^x − 1)",
    ),
    "softplus": (
        _softplus,
        (P("beta", "float", 1.0), P("threshold", "float", 20.0)),
        "float",
        True,
        "log(1 + e^(beta·x)) / beta, linear above threshold",
    ),
    "relu6": (lambda x: np.clip(x, 0, 6), (), "float", True, "min(max(x, 0), 6)"),
    "hardsigmoid": (_hardsigmoid, (), "float", True, "min(max(x + 3, 0), 6) / 6"),
    "hardswish": (lambda x: x * _hardsigmoid(x), (), "float", True, "x·hardsigmoid(x)"),
    "mish": (
        lambda x: x * np.tanh(np.logaddexp(0, x)),
        (),
        "float",
        True,
        "x·tanh(log(1 + e^x))",
    ),
    "exp": (lambda x: np.exp(x), (), "float", True, "e^x"),
    "log": (lambda x: np.log(x), (), "float", True, "natural logarithm"),
    "sqrt": (lambda x: np.sqrt(x), (), "float", True, "square root"),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (), "float", True, "1 / √x"),
    "sin": (lambda x: np.sin(x), (), "float", True, "sine"),
    "cos": (lambda x: np.cos(x), (), "float", True, "cosine"),
    "erf": (_erf, (), "float", True, "the error function, 2/√π ∫₀ˣ e^(−t²) dt"),
    "abs": (lambda x: np.abs(x), (), "number", True, "absolute value"),
    "neg": (lambda x: np.negative(x), (), "number", True, "−x (the unary minus)"),
    "round": (lambda x: np.round(x), (), "float", False, "round half to even (not differentiable)"),
    "floor": (lambda x: np.floor(x), (), "float", False, "round down (not differentiable)"),
}


def _same_type(ctx: Ctx) -> list[TensorType]:
    return [ctx.inputs["x"]]


def _unary_reference(fn, attr_names):
    def reference(inputs, attrs, params):
        return [
            np.asarray(fn(inputs["x"], *(attrs[a] for a in attr_names))).astype(inputs["x"].dtype)
        ]

    return reference


for _name, (_fn, _attrs, _dtypes, _diff, _doc) in _UNARY.items():
    register(
        OpDef(
            name=_name,
            signature=sig(P("x", "tensor", dtypes=_dtypes), *_attrs),
            infer=_same_type,
            reference=_unary_reference(_fn, [a.name for a in _attrs]),
            differentiable=("x",) if _diff else (),
            axes="pointwise",
            doc=_doc,
        )
    )


def _binary_infer(result: str, verb: str):
    def infer(ctx: Ctx) -> list[TensorType]:
        a, b = ctx.inputs.values()
        dtype = same_dtype(ctx, a, b, verb=verb)
        if result == "float" and not dtype.is_float:
            ctx.fail(
                f"needs floating-point operands, found {dtype}",
                label=f"{dtype}",
                code="E-DTYPE",
                notes=('cast(x, "f32") first',),
            )
        if result == "number" and dtype == DType.bool:
            ctx.fail("cannot do arithmetic on bool tensors", label="bool", code="E-DTYPE")
        out = DType.bool if result == "bool" else dtype
        return [TensorType(out, broadcast(ctx, a, b, verb))]

    return infer


def _floordiv(a, b):
    """floor(a / b) for floats (the rounded quotient, floored: ONNX's Floor(Div),
    TensorFlow's floordiv); Python's floor division for integers."""
    if np.result_type(a, b).kind == "f":
        return np.floor(np.true_divide(a, b))
    return np.floor_divide(a, b)


# name: (NumPy function or its name, operand/result dtype class, differentiable, symbol, verb)
_BINARY = {
    "add": ("add", "number", True, "+", "add"),
    "sub": ("subtract", "number", True, "-", "subtract"),
    "mul": ("multiply", "number", True, "*", "multiply"),
    "div": ("divide", "float", True, "/", "divide"),
    "floordiv": (_floordiv, "number", False, "//", "divide"),
    "mod": ("remainder", "number", False, "%", "divide"),
    "pow": ("power", "float", True, "**", "raise"),
    "lt": ("less", "bool", False, "<", "compare"),
    "le": ("less_equal", "bool", False, "<=", "compare"),
    "gt": ("greater", "bool", False, ">", "compare"),
    "ge": ("greater_equal", "bool", False, ">=", "compare"),
    "eq": ("equal", "bool", False, "==", "compare"),
    "ne": ("not_equal", "bool", False, "!=", "compare"),
}
# The op each binary operator of the language spells (`a @ b`: matmul, in dense.py).
BINARY_SYMBOLS = {entry[3]: name for name, entry in _BINARY.items()} | {"@": "matmul"}


def _binary_reference(fn):
    def reference(inputs, attrs, params):
        a, b = inputs.values()
        out = (getattr(np, fn) if isinstance(fn, str) else fn)(a, b)
        return [out if out.dtype == bool else out.astype(a.dtype)]

    return reference


_BINARY_DOCS = {
    "floordiv": "a // b with NumPy broadcasting: integers Python's floor division; floats "
    "floor(a / b) (not differentiable)",
    "mod": "a % b with NumPy broadcasting: the remainder with the divisor's sign, "
    "a - floor(a / b)·b computed exactly (torch.remainder; floats via fmod; not differentiable)",
}
_OPERANDS = {"pow": ("x", "p")}  # LANGUAGE.md names pow's arguments; the rest are (a, b)

for _name, (_fn, _kind, _diff, _sym, _verb) in _BINARY.items():
    _left, _right = _OPERANDS.get(_name, ("a", "b"))
    register(
        OpDef(
            name=_name,
            signature=sig(P(_left, "tensor"), P(_right, "tensor")),
            infer=_binary_infer(_kind, _verb),
            reference=_binary_reference(_fn),
            differentiable=(_left, _right) if _diff else (),
            axes="pointwise",
            doc=_BINARY_DOCS.get(_name, f"a {_sym} b with NumPy broadcasting"),
        )
    )


def _matmul_macs(use: Use):
    """Each output element: the contracted size; 0 for a vector `b` (PyTorch computes that
    product with mv or dot, which FlopCounterMode does not count)."""
    a, b = use.inputs["a"], use.inputs["b"]
    return 0 if b.rank == 1 else use.outputs[0].numel * a.shape[-1]


def _matmul_infer(ctx: Ctx) -> list[TensorType]:
    a, b = ctx.inputs["a"], ctx.inputs["b"]
    dtype = same_dtype(ctx, a, b)
    if a.rank == 0 or b.rank == 0:
        ctx.fail(f"needs operands of rank ≥ 1, found {a} and {b}")
    sa = a.shape if a.rank > 1 else (1, *a.shape)
    sb = b.shape if b.rank > 1 else (*b.shape, 1)
    if sa[-1] != sb[-2]:
        ctx.fail(f"cannot multiply {a} by {b}", label=f"inner sizes {sa[-1]} vs {sb[-2]}")
    batch = broadcast(ctx, TensorType(dtype, sa[:-2]), TensorType(dtype, sb[:-2]))
    shape = (*batch, *((sa[-2],) if a.rank > 1 else ()), *((sb[-1],) if b.rank > 1 else ()))
    return [TensorType(dtype, shape)]


register(
    OpDef(
        name="matmul",
        signature=sig(P("a", "tensor", dtypes="number"), P("b", "tensor", dtypes="number")),
        infer=_matmul_infer,
        macs=_matmul_macs,
        reference=lambda inputs, attrs, params: [inputs["a"] @ inputs["b"]],
        differentiable=("a", "b"),
        doc="Matrix product with NumPy semantics (the `@` operator).",
    )
)


def _where_infer(ctx: Ctx) -> list[TensorType]:
    c, a, b = ctx.inputs["cond"], ctx.inputs["a"], ctx.inputs["b"]
    dtype = same_dtype(ctx, a, b)
    shape = broadcast(ctx, c, TensorType(dtype, broadcast(ctx, a, b)))
    return [TensorType(dtype, shape)]


register(
    OpDef(
        name="where",
        signature=sig(P("cond", "tensor", dtypes="bool"), P("a", "tensor"), P("b", "tensor")),
        infer=_where_infer,
        reference=lambda inputs, attrs, params: [
            np.where(inputs["cond"], inputs["a"], inputs["b"])
        ],
        differentiable=("a", "b"),
        axes="pointwise",
        doc="a where cond is true, else b (broadcast).",
    )
)


def _clamp_infer(ctx: Ctx) -> list[TensorType]:
    lo, hi = ctx.attrs["lo"], ctx.attrs["hi"]
    if lo is not None and hi is not None and lo > hi:
        ctx.fail(f"lo ({lo:g}) is greater than hi ({hi:g})", "lo", code="E-VALUE")
    for name in ("lo", "hi"):
        fits_in(ctx, name, ctx.inputs["x"].dtype)
    return [ctx.inputs["x"]]


register(
    OpDef(
        name="clamp",
        signature=sig(
            P("x", "tensor", dtypes="number"), P("lo", "float", None), P("hi", "float", None)
        ),
        infer=_clamp_infer,
        reference=lambda inputs, attrs, params: [
            np.clip(inputs["x"], attrs["lo"], attrs["hi"]).astype(inputs["x"].dtype)
        ],
        differentiable=("x",),
        axes="pointwise",
        doc="min(max(x, lo), hi).",
    )
)

register(
    OpDef(
        name="cast",
        signature=sig(P("x", "tensor"), P("dtype", "dtype")),
        infer=lambda ctx: [ctx.inputs["x"].with_dtype(ctx.attrs["dtype"])],
        reference=lambda inputs, attrs, params: [inputs["x"].astype(_NUMPY[attrs["dtype"]])],
        differentiable=("x",),
        axes="pointwise",
        doc="Element type conversion; differentiable only between floating types.",
    )
)

register(
    OpDef(
        name="stop_gradient",
        signature=sig(P("x", "tensor")),
        infer=_same_type,
        reference=lambda inputs, attrs, params: [inputs["x"]],
        differentiable=(),
        axes="pointwise",
        doc="Identity whose gradient is zero: marks an intended cut.",
    )
)

_NUMPY = {d: d.numpy or "float32" for d in DType}  # bf16 computed in float32
