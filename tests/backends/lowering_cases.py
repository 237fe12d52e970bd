"""The lowering test cases every backend runs: each registry op applied to arrays (a Python
number stands for an inlined constant), with its attributes, a layer's config and optionally
symbolic input types; a backend's lowering test executes the generated source and compares it
with the op's NumPy reference. `bind` runs a case's shape rule, `python_sources` and
`onnx_nodes` write a case's code: the framework-independent part of a lowering test, which
the op reference in the documentation (scripts/docs/) also shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualnet.backends import BACKENDS
from dualnet.backends.rows import lowering_row
from dualnet.ir.dims import Dim, sym
from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.registry import REQUIRED, Ctx, run_rule
from dualnet.ops.shape import substitute_attrs

RNG = np.random.default_rng(11)
B, T, H, W = sym("B"), sym("T"), sym("H"), sym("W")

DTYPES = {
    np.dtype(np.float16): DType.f16,
    np.dtype(np.float32): DType.f32,
    np.dtype(np.float64): DType.f64,
    np.dtype(np.int32): DType.i32,
    np.dtype(np.int64): DType.i64,
    np.dtype(np.bool_): DType.bool,
}


def assert_one_row_per_op(backend: str, layer_row: type, function_row: type) -> None:
    """The registry carries a row of `backend` for every op, of the layer kind for a layer,
    and the backend's table (`ROWS`) holds exactly those rows."""
    table = BACKENDS[backend].module("lowering").ROWS
    assert set(table) == set(REGISTRY)
    for name, op in REGISTRY.items():
        row = lowering_row(name, backend)
        assert isinstance(row, layer_row if op.is_layer else function_row), name
        assert table[name] is row, name


def fmt(value) -> str:
    """A simple emitter's formatter: symbolic sizes are names bound in the exec namespace."""
    if isinstance(value, Dim):
        text = str(value)
        return f"({text})" if " " in text else text
    if isinstance(value, tuple):
        inner = ", ".join(fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def fill(signature, given: dict) -> dict:
    """The non-tensor arguments of `signature`: `given`, else the defaults."""
    out = {p.name: given.get(p.name, p.default) for p in signature.params if not p.is_tensor}
    missing = [k for k, v in out.items() if v is REQUIRED]
    assert not missing and set(given) <= set(out), (missing, given)
    return out


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def positive(*shape, dtype=np.float32):
    return (RNG.random(shape) + 0.1).astype(dtype)


class Case:
    """One op applied to arrays (a Python number stands for an inlined constant), optionally
    with symbolic input types (`types`) whose symbols `env` binds."""

    def __init__(
        self, op, inputs, config=None, types=None, env=None, tol=1e-5, param_scale=1.0, **attrs
    ):
        self.op, self.inputs, self.config, self.attrs = op, inputs, config or {}, attrs
        self.types, self.env, self.tol = types or {}, env or {}, tol
        self.param_scale = param_scale


def array_dtype(inputs) -> np.dtype:
    for v in inputs.values():
        if isinstance(v, np.ndarray) and v.dtype != np.bool_:
            return v.dtype
    return np.dtype(np.float32)


@dataclass
class Bound:
    """A case bound to a node: the reference's inputs (`arrays`), the input types and sources a
    lowering receives, the arrays the sources name (`named`), the rule's results and context."""

    case: Case
    arrays: dict[str, Any]
    types: dict[str, Any]
    sources: dict[str, Any]
    named: dict[str, np.ndarray]
    out_types: list
    ctx: Ctx

    @property
    def attrs(self) -> dict:
        """What the lowering and the reference receive: a layer's config with the call's
        attributes, or a function's attributes."""
        if REGISTRY[self.case.op].is_layer:
            return {**self.ctx.config, **self.ctx.attrs}
        return dict(self.ctx.attrs)

    def params(self) -> dict[str, np.ndarray]:
        """Random parameters for a layer (variances positive)."""
        params = {}
        for name, spec in {**self.ctx.params, **self.ctx.buffers}.items():
            if not spec.dtype.is_float:  # an index Buffer
                params[name] = RNG.integers(0, 5, spec.shape).astype(spec.dtype.numpy)
                continue
            v = RNG.standard_normal(spec.shape) * self.case.param_scale
            params[name] = (np.abs(v) + 0.5 if "var" in name else v).astype(np.float32)
        return params

    def reference(self, params: dict) -> list:
        attrs = substitute_attrs(self.attrs, self.case.env) if self.case.env else self.attrs
        return REGISTRY[self.case.op].reference(self.arrays, attrs, params)


def _bind_input(name: str, value, default: np.dtype):
    """(array, type, source, named arrays) of one tensor argument."""
    if value is None:
        return None, None, None, {}
    if isinstance(value, list):
        names = [f"{name}_{i}" for i in range(len(value))]
        return (
            value,
            [TensorType(DTYPES[a.dtype], a.shape) for a in value],
            names,
            dict(zip(names, value, strict=True)),
        )
    if isinstance(value, np.ndarray):
        return value, TensorType(DTYPES[value.dtype], value.shape), name, {name: value}
    # an inlined scalar constant
    return (
        np.asarray(value, dtype=default),
        TensorType(DTYPES[np.dtype(default)], ()),
        repr(value),
        {},
    )


def bind(case: Case) -> Bound:
    """Run the op's rule on the case's arrays (or its symbolic `types`)."""
    op = REGISTRY[case.op]
    default = array_dtype(case.inputs)
    arrays, types, sources, named = {}, {}, {}, {}
    for p in (p for p in op.signature.params if p.is_tensor):
        arrays[p.name], types[p.name], sources[p.name], more = _bind_input(
            p.name, case.inputs.get(p.name), default
        )
        named.update(more)
    for name, t in case.types.items():  # symbolic types must describe the arrays
        concrete = tuple(substitute_attrs(t.shape, case.env))
        assert concrete == arrays[name].shape, (name, t, arrays[name].shape)
        types[name] = t
    config = fill(op.construct, case.config) if op.is_layer else {}
    out_types, ctx = run_rule(op, types, fill(op.signature, case.attrs), {}, None, config)
    return Bound(case, arrays, types, sources, named, out_types, ctx)


# ---------------------------------------------------------------- a case's code

# (the backend's call type, the name its generated call gives the layer)
_PYTHON_CALLS = {"torch": ("TorchCall", "module"), "keras": ("KerasCall", "layer")}


def python_sources(case: Case, backend: str, hide_in_types: bool = False):
    """(bound case, constructor source — "" for a function —, call or function source) that
    the `backend` ("torch" or "keras") lowering writes for a case; `hide_in_types` gives the
    lowering only the result types, as for a function step of a Sequential."""
    bound = bind(case)
    call_type, layer_name = _PYTHON_CALLS[backend]
    call = getattr(BACKENDS[backend].module("lowering"), call_type)(
        bound.sources, bound.attrs, {} if hide_in_types else bound.types, bound.out_types, fmt
    )
    if not REGISTRY[case.op].is_layer:
        return bound, "", lowering_row(case.op, backend, layer=False).lower(call)
    row = lowering_row(case.op, backend, layer=True)
    return bound, row.construct(dict(bound.ctx.config), fmt), row.call(layer_name, call)


LAYER = "layer"  # a layer's state_dict prefix in the ONNX test graphs


def graph_inputs(bound: Bound) -> dict[str, TensorType]:
    """The ONNX graph inputs (name → type): the case's arrays, symbolic where the case says."""
    out = {}
    for name, source in bound.sources.items():
        if isinstance(source, list):
            out.update(zip(source, bound.types[name], strict=True))
        elif source in bound.named:
            out[source] = bound.types[name]
    return out


class Sizes:
    """The `size` callback of a test graph: each symbol read once from the first graph input
    axis it names (Shape, Gather), else from an extra input `<symbol>_size` of that length
    (`extra`, fed from `feeds`)."""

    def __init__(self, b, inputs: dict[str, TensorType], env: dict[str, int]):
        self.b, self.values = b, {}
        missing = [s for s in env if not any(sym(s) in t.shape for t in inputs.values())]
        self.extra = {f"{s}_size": TensorType(DType.f32, (sym(s),)) for s in missing}
        self.feeds = {f"{s}_size": np.zeros(env[s], dtype=np.float32) for s in missing}
        self.axes = {}
        for name, t in {**inputs, **self.extra}.items():
            for axis, d in enumerate(t.shape):
                if isinstance(d, Dim) and d.symbol:
                    self.axes.setdefault(d.symbol, (name, axis))

    def symbol(self, name: str) -> str:
        if name not in self.values:
            value, axis = self.axes[name]
            shape = self.b.one("Shape", [value])
            self.values[name] = self.b.one("Gather", [shape, self.b.ints([axis], "axis")])
        return self.values[name]

    def __call__(self, d) -> str:
        return self.b.size(d, self.symbol)


@dataclass
class OnnxNodes:
    """A case lowered to ONNX: the builder (nodes, initializers), the graph inputs, the size
    callback (its extra inputs and feeds), the result names, the bound case and a layer's
    parameters as arrays."""

    builder: Any  # dualnet.backends.onnx.builder.GraphBuilder
    inputs: dict[str, TensorType]
    sizes: Sizes
    outputs: list[str]
    bound: Bound
    arrays: dict[str, np.ndarray]


def onnx_nodes(case: Case, opset: int) -> OnnxNodes:
    """The ONNX nodes the lowering writes for a case at `opset` (needs the onnx package's
    protobuf classes, imported here so that the other backends' tests run without it)."""
    from dualnet.backends.onnx.builder import GraphBuilder
    from dualnet.backends.onnx.lowering import OnnxCall, lower

    bound = bind(case)
    op = REGISTRY[case.op]
    b = GraphBuilder(opset)
    inputs = graph_inputs(bound)
    sizes = Sizes(b, inputs, case.env)
    for name in (*inputs, *sizes.extra):
        b.reserve(name)
    b.scope = LAYER if op.is_layer else case.op
    values = {}
    for name, source in bound.sources.items():
        if source is None or isinstance(source, list) or source in bound.named:
            values[name] = source
        else:  # an inlined number: a 0-d constant of its type
            values[name] = b.constant(bound.arrays[name], "scalar")
    arrays = bound.params() if op.is_layer else {}
    params = {name: b.initializer(f"{LAYER}.{name}", a) for name, a in arrays.items()}
    call = OnnxCall(b, values, bound.attrs, bound.types, bound.out_types, params, arrays, sizes)
    outputs = lower(case.op, call)
    assert len(outputs) == len(bound.out_types)
    assert not set(outputs) & set(inputs), "every result is a node output"
    return OnnxNodes(b, inputs, sizes, outputs, bound, arrays)


# ---------------------------------------------------------------- the cases

ENV = {"B": 2, "T": 5, "H": 9, "W": 8}


def _halves():
    return np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.4, -2.6, 3.0], dtype=np.float32)


def _ties():
    return np.array([[1, 3, 3, 0], [2, 2, 1, 2], [0, -1, -1, 5]], dtype=np.int32)


def _nonzero(*shape, dtype=np.float32):
    """Divisors of either sign, at least 0.5 from zero."""
    return (np.sign(RNG.standard_normal(shape)) * (RNG.random(shape) * 3 + 0.5)).astype(dtype)


def _int_divisors():
    return np.array([3, -3, 5, -2], dtype=np.int64)


def attention_mask(shape, p=0.7):
    m = RNG.random(shape) < p
    m[..., 0] = True
    return m


def mask_with_empty_row(shape, row):
    m = attention_mask(shape)
    m[row] = False
    return m


def function_cases() -> list:
    c = []
    add = c.append
    x4 = randn(2, 3, 4, 5)
    # element-wise
    for name in ("relu", "sigmoid", "tanh", "silu", "exp", "abs", "neg", "floor", "stop_gradient"):
        add(Case(name, {"x": x4}))
    for name in ("log", "sqrt", "rsqrt"):
        add(Case(name, {"x": positive(3, 4)}))
    add(Case("round", {"x": _halves()}))
    add(Case("abs", {"x": np.array([-3, 0, 4], dtype=np.int64)}))
    add(Case("neg", {"x": 2.5}))
    add(Case("exp", {"x": 1.5}))
    for approximate in ("none", "tanh"):
        add(Case("gelu", {"x": x4}, approximate=approximate))
        add(Case("gelu", {"x": randn(4, 6, dtype=np.float64)}, approximate=approximate))
    add(Case("leaky_relu", {"x": x4}))
    add(Case("leaky_relu", {"x": x4}, slope=0.2))
    add(Case("elu", {"x": x4}))
    add(Case("elu", {"x": x4}, alpha=0.5))
    add(Case("softplus", {"x": x4 * 10}))
    add(Case("softplus", {"x": x4 * 4}, beta=2.0, threshold=5.0))
    for name in ("sin", "cos", "erf", "relu6", "hardsigmoid", "hardswish", "mish"):
        add(Case(name, {"x": x4 * 4}))  # hardsigmoid's and relu6's kinks at ±3 and 6 inside
        add(Case(name, {"x": randn(3, 5, dtype=np.float64) * 4}))
    for name in ("add", "sub", "mul", "div"):
        add(Case(name, {"a": randn(2, 3, 4), "b": randn(3, 1)}))
        add(Case(name, {"a": 2.0, "b": randn(3, 4)}))
    add(Case("add", {"a": 2.0, "b": 3.0}))
    add(Case("add", {"a": np.arange(6, dtype=np.int32), "b": 3}))
    add(Case("mul", {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": -2}))
    add(Case("sub", {"a": randn(3), "b": -1.5}))
    add(Case("pow", {"x": positive(3, 4), "p": randn(4)}))
    for name in ("floordiv", "mod"):  # every sign of dividend and divisor; no zero divisor
        add(Case(name, {"a": randn(2, 3, 4) * 5, "b": _nonzero(3, 1)}))
        add(
            Case(name, {"a": randn(3, 4, dtype=np.float64) * 5, "b": _nonzero(4, dtype=np.float64)})
        )
        add(Case(name, {"a": 7.5, "b": _nonzero(3, 4)}))
        add(Case(name, {"a": np.arange(-7, 8, dtype=np.int32), "b": 3}))
        add(Case(name, {"a": np.arange(-7, 8, dtype=np.int64), "b": -4}))
        add(Case(name, {"a": np.arange(-6, 6, dtype=np.int64).reshape(3, 4), "b": _int_divisors()}))
        add(Case(name, {"a": -9, "b": _int_divisors().astype(np.int32)}))
    add(Case("pow", {"x": -2.0, "p": np.array([1.0, 2.0, 3.0], dtype=np.float32)}))
    add(Case("pow", {"x": positive(5, dtype=np.float64), "p": 0.5}))
    grid = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        add(Case(name, {"a": grid, "b": np.array([1.0, 1.0, 0.0], dtype=np.float32)}))
        add(Case(name, {"a": 1.0, "b": grid}))
    add(Case("eq", {"a": np.array([1, 2, 3], dtype=np.int64), "b": 2}))
    add(Case("matmul", {"a": randn(3, 4), "b": randn(4, 5)}))
    add(Case("matmul", {"a": randn(2, 3, 4), "b": randn(4, 5)}))
    add(Case("matmul", {"a": randn(4), "b": randn(2, 4, 3)}))
    add(Case("matmul", {"a": randn(3, 4, dtype=np.float64), "b": randn(4, dtype=np.float64)}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": randn(3, 4), "b": randn(4)}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": randn(3, 4), "b": 0.0}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": 1.0, "b": -1.0}))
    add(Case("clamp", {"x": x4}, lo=-0.5, hi=0.5))
    add(Case("clamp", {"x": x4}, lo=0.0))
    add(Case("clamp", {"x": x4}, hi=0.25))
    add(Case("clamp", {"x": x4}))
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int32)}, lo=-1.5, hi=2.5))
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int64)}, lo=1.5))
    for dtype in ("f16", "f64", "i32", "i64", "bool"):
        add(Case("cast", {"x": x4 * 3}, dtype=DType(dtype)))
    add(Case("cast", {"x": np.array([0, 2, -3], dtype=np.int32)}, dtype=DType.f32))
    # reductions
    add(Case("mean", {"x": x4}, axis=(1, 2), keepdims=True))
    add(Case("mean", {"x": x4}, axis=-1))
    add(Case("sum", {"x": x4}, axis=0))
    add(Case("sum", {"x": np.arange(24, dtype=np.int32).reshape(2, 3, 4)}, axis=(0, 2)))
    add(Case("sum", {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}, axis=1, keepdims=True))
    add(Case("max", {"x": x4}, axis=(0, 3)))
    add(Case("min", {"x": _ties()}, axis=1, keepdims=True))
    add(Case("argmax", {"x": _ties()}, axis=1))
    add(Case("argmin", {"x": _ties()}, axis=0, keepdims=True))
    add(Case("argmax", {"x": x4}, axis=-1))
    add(Case("cumsum", {"x": x4}, axis=1))
    add(Case("cumsum", {"x": randn(3, 6, dtype=np.float64)}, axis=-1))
    add(Case("cumsum", {"x": np.arange(-12, 12, dtype=np.int32).reshape(2, 3, 4)}, axis=0))
    add(Case("cumsum", {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}, axis=-1))
    add(
        Case(
            "cumsum",
            {"x": randn(2, 5, 3)},
            types={"x": TensorType(DType.f32, (B, T, 3))},
            env=ENV,
            axis=1,
        )
    )
    add(Case("softmax", {"x": x4}))
    add(Case("softmax", {"x": x4}, axis=1))
    add(Case("log_softmax", {"x": x4 * 5}))
    add(Case("log_softmax", {"x": x4 * 5}, axis=0))
    # shape ops
    add(Case("flatten", {"x": x4}))
    add(Case("flatten", {"x": x4}, start=0))
    add(Case("flatten", {"x": x4}, start=-2))
    add(Case("reshape", {"x": x4}, dims=(2, -1, 5)))
    add(Case("reshape", {"x": x4}, dims=(6, 20)))
    add(
        Case(
            "reshape",
            {"x": randn(2, 5, 12)},
            types={"x": TensorType(DType.f32, (B, T, 12))},
            env=ENV,
            dims=(B, T, 3, 4),
        )
    )
    add(
        Case(
            "reshape",
            {"x": randn(2, 5, 12)},
            types={"x": TensorType(DType.f32, (B, T, 12))},
            env=ENV,
            dims=(B * T, 12),
        )
    )
    add(Case("permute", {"x": x4}, axes=(0, 2, 3, 1)))
    add(Case("permute", {"x": x4}, axes=(-1, 0, 1, 2)))
    add(Case("transpose", {"x": x4}, a=1, b=-1))
    add(Case("concat", {"xs": [randn(2, 3), randn(2, 1), randn(2, 4)]}, axis=1))
    add(Case("concat", {"xs": [randn(2, 3), randn(1, 3)]}, axis=-2))
    add(Case("stack", {"xs": [randn(2, 3), randn(2, 3), randn(2, 3)]}, axis=0))
    add(Case("stack", {"xs": [randn(2, 3), randn(2, 3)]}, axis=-1))
    add(Case("stack", {"xs": [x4]}, axis=2))
    add(Case("stack", {"xs": [randn(3, 2, dtype=np.float64)] * 2}, axis=1))
    add(Case("stack", {"xs": [np.arange(6, dtype=np.int64), np.arange(6, 12)]}, axis=1))
    add(Case("roll", {"x": x4}, shift=2, axis=1))
    add(Case("roll", {"x": x4}, shift=(-1, 7), axis=(2, 3)))  # 7 > 5: mod the size
    add(Case("roll", {"x": x4}, shift=(-5, 1, 2), axis=(-1, 1, 1)))  # a full turn; twice
    add(Case("roll", {"x": randn(4, 5, dtype=np.float64)}, shift=-3, axis=0))
    add(
        Case("roll", {"x": np.arange(12, dtype=np.int32).reshape(3, 4)}, shift=(1, -6), axis=(0, 1))
    )
    add(
        Case(
            "roll",
            {"x": randn(2, 9, 8)},
            types={"x": TensorType(DType.f32, (B, H, W))},
            env=ENV,
            shift=(-3, 10),
            axis=(1, 2),
        )
    )
    add(Case("split", {"x": randn(2, 6, 4)}, n=3, axis=1))
    add(Case("split", {"x": randn(2, 6, 4)}, n=2, axis=-1))
    add(Case("split", {"x": randn(2, 6, 4)}, n=1, axis=0))
    add(Case("chunk", {"x": randn(2, 6, 4)}, chunks=3, axis=1))
    add(Case("chunk", {"x": randn(5, 3, dtype=np.float64)}, chunks=4))  # 2, 2, 1: 3 parts
    add(Case("chunk", {"x": np.arange(14, dtype=np.int64).reshape(2, 7)}, chunks=3, axis=-1))
    add(Case("chunk", {"x": randn(2, 6)}, chunks=1, axis=1))
    add(Case("chunk", {"x": randn(3, 2)}, chunks=5))  # more chunks than rows: 3 parts
    add(
        Case(
            "chunk",
            {"x": randn(2, 10, 3)},
            types={"x": TensorType(DType.f32, (B, T * 2, 3))},
            env=ENV,
            chunks=2,
            axis=1,
        )
    )
    for op in ("expand", "broadcast_to"):
        add(Case(op, {"x": randn(3, 1)}, shape=(2, -1, 4)))
        add(Case(op, {"x": randn(4, dtype=np.float64)}, shape=(3, 4)))
        add(Case(op, {"x": np.arange(3, dtype=np.int32).reshape(3, 1)}, shape=(3, 5)))
        add(Case(op, {"x": RNG.random((1, 2)) < 0.5}, shape=(3, 2)))
        add(
            Case(
                op,
                {"x": randn(2, 1, 5)},
                types={"x": TensorType(DType.f32, (B, 1, T))},
                env=ENV,
                shape=(H, B, 3, -1),  # a new leading axis of a size no input has
            )
        )
    add(Case("zeros", {}, shape=(2, 3)))
    add(Case("ones", {}, shape=(4,), dtype=DType.i32))
    add(Case("full", {}, shape=(2, 2), value=2.5, dtype=DType.f64))
    add(Case("full", {}, shape=(3,), value=-7))  # i64, as torch.full of an int
    add(Case("full", {}, shape=(2, 1), value=True))
    add(Case("zeros", {}, env=ENV, shape=(B, T), dtype=DType.i64))
    add(Case("full", {}, env=ENV, shape=(T, 3, B), value=0.5))
    add(Case("tensor", {}, data=[[1.5, -2], [0.25, 3]]))  # f32: a float among the numbers
    add(Case("tensor", {}, data=[3, 1, 2]))  # i64
    add(Case("tensor", {}, data=[[True, False]]))
    add(Case("tensor", {}, data=[1, 2], dtype=DType.f64))
    add(Case("tensor", {}, data=2.5, dtype=DType.f16))  # a 0-d tensor
    add(Case("zeros_like", {"x": x4}))
    add(Case("ones_like", {"x": randn(2, 3)}, dtype=DType.i64))
    add(Case("full_like", {"x": np.arange(4, dtype=np.int32)}, value=7))
    add(Case("full_like", {"x": randn(2, 2, dtype=np.float64)}, value=1, dtype=DType.bool))
    add(
        Case(
            "ones_like",
            {"x": randn(2, 5, 3)},
            types={"x": TensorType(DType.f32, (B, T, 3))},
            env=ENV,
        )
    )
    table = randn(5, 4)
    add(Case("take", {"x": table, "index": np.array([[4, -1], [0, -5], [2, 2]])}))
    add(Case("take", {"x": table, "index": np.array([3, 0, -2], dtype=np.int32)}, axis=1))
    add(Case("take", {"x": randn(3, 2, dtype=np.float64), "index": np.array(-1)}))
    add(Case("take", {"x": np.arange(6, dtype=np.int64), "index": np.array([5, 0, 3])}))
    cols = np.array([[3, 0, 0, 1], [2, 2, 3, 0], [1, 0, 3, 3]])
    add(Case("gather", {"x": randn(3, 4), "index": cols}, axis=1))
    add(Case("gather", {"x": randn(3, 4, dtype=np.float64), "index": cols % 3}, axis=-2))
    add(Case("gather", {"x": np.arange(12).reshape(3, 4), "index": cols.astype(np.int32)}, axis=1))
    add(
        Case(
            "gather",
            {"x": randn(2, 5, 3), "index": RNG.integers(0, 3, (2, 5, 3))},
            types={
                "x": TensorType(DType.f32, (B, T, 3)),
                "index": TensorType(DType.i64, (B, T, 3)),
            },
            env=ENV,
            axis=2,
        )
    )
    add(
        Case(
            "take",
            {"x": randn(2, 5, 4), "index": np.array([[1, -1, 0]])},
            types={"x": TensorType(DType.f32, (B, T, 4))},
            env=ENV,
            axis=1,
        )
    )
    add(Case("unsqueeze", {"x": randn(2, 3)}, axis=-1))
    add(Case("unsqueeze", {"x": randn(2, 3)}, axis=0))
    add(Case("squeeze", {"x": randn(2, 1, 3)}, axis=1))
    add(Case("pad", {"x": x4}, pads=(1, 2)))
    add(Case("pad", {"x": x4}, pads=(1, 2, 0, 3), value=1.5))
    add(Case("pad", {"x": x4}, pads=(1, 0, 0, 0, 2, 1)))
    add(Case("pad", {"x": x4}, pads=(0, 0)))
    add(
        Case("pad", {"x": np.arange(6, dtype=np.int64).reshape(2, 3)}, pads=(1, 1, 0, 2), value=7.0)
    )
    add(Case("pad", {"x": RNG.random((2, 3)) < 0.5}, pads=(1, 1), value=1.0))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=2))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=(2, 3)))
    add(Case("upsample", {"x": randn(1, 2, 3, 3)}, scale=41))
    add(Case("upsample", {"x": randn(2, 3, 7)}, scale=3))
    add(Case("upsample", {"x": randn(1, 2, 2, 3, 2)}, scale=(1, 2, 4)))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=2, mode="bilinear"))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=(3, 2), mode="bilinear"))
    add(Case("upsample", {"x": randn(1, 1, 3, 4, dtype=np.float64)}, scale=5, mode="bilinear"))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(1, 3), 0)))
    add(Case("getitem", {"x": x4}, items=(-1, slice(-3, None), slice(None, None, 2))))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(None, -1), slice(1, -1, 2), -2)))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(2, 3))))
    add(Case("getitem", {"x": x4}, items=(slice(None),)))
    add(Case("getitem", {"x": randn(7)}, items=3))
    add(Case("getitem", {"x": x4}, items=(None,)))
    add(Case("getitem", {"x": x4}, items=(slice(None), None, -1, slice(1, 3), None)))
    add(Case("getitem", {"x": x4}, items=(None, 0, 1, 2, None)))
    add(
        Case(
            "getitem",
            {"x": randn(2, 9, 8)},
            types={"x": TensorType(DType.f32, (B, H, W))},
            env=ENV,
            items=(slice(None), slice(1, -1), -1),
        )
    )
    add(
        Case(
            "getitem",
            {"x": randn(2, 9, 8)},
            types={"x": TensorType(DType.f32, (B, H, W))},
            env=ENV,
            items=(slice(None), slice(None, H // 2), slice(1, None, 3)),
        )
    )
    add(Case("arange", {}, n=5))
    add(Case("arange", {}, n=1))
    add(Case("arange", {}, env=ENV, n=H - 2))
    # pooling
    xi = randn(2, 3, 8, 8)
    xo = randn(2, 3, 7, 9)
    xs = randn(2, 3, 9, 8)  # [B, 3, H, W] in ENV
    for name in ("max_pool2d", "avg_pool2d"):
        add(Case(name, {"x": xi}, kernel=2))
        add(Case(name, {"x": xo}, kernel=3, stride=2, padding=1))
        add(Case(name, {"x": xo}, kernel=(3, 2), stride=(1, 2), padding=(1, 0)))
        for x in (xi, xo):  # "same", stride 2, on even and odd sizes
            add(Case(name, {"x": x}, kernel=3, stride=2, padding="same"))
            add(Case(name, {"x": x}, kernel=2, stride=2, padding="same"))
        add(
            Case(
                name,
                {"x": xs},
                types={"x": TensorType(DType.f32, (B, 3, H, W))},
                env=ENV,
                kernel=3,
                stride=2,
                padding="same",
            )
        )
    for include in (True, False):
        add(Case("avg_pool2d", {"x": xo}, kernel=3, stride=2, padding=1, count_include_pad=include))
        add(
            Case(
                "avg_pool2d",
                {"x": xi},
                kernel=3,
                stride=2,
                padding="same",
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool2d",
                {"x": xo},
                kernel=4,
                stride=3,
                padding="same",
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool2d",
                {"x": xs},
                types={"x": TensorType(DType.f32, (B, 3, H, W))},
                env=ENV,
                kernel=3,
                stride=2,
                padding="same",
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool1d",
                {"x": randn(2, 3, 11)},
                kernel=4,
                stride=2,
                padding="same",
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool1d", {"x": randn(2, 3, 10)}, kernel=3, padding=1, count_include_pad=include
            )
        )
    add(Case("max_pool1d", {"x": randn(2, 3, 10)}, kernel=3))
    add(Case("max_pool1d", {"x": randn(2, 3, 11)}, kernel=4, stride=2, padding="same"))
    add(Case("max_pool1d", {"x": randn(2, 3, 11)}, kernel=3, stride=1, padding="same"))
    add(
        Case(
            "max_pool2d",
            {"x": randn(2, 3, 8, 8, dtype=np.float64)},
            kernel=3,
            stride=2,
            padding="same",
        )
    )
    # ceil_mode: odd sizes where a last, partial window is added; stride > kernel; symbolic
    for name in ("max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"):
        includes = (True, False) if name.startswith("avg") else (None,)
        for include in includes:
            extra = {} if include is None else {"count_include_pad": include}
            x = xo if name.endswith("2d") else randn(2, 3, 10)
            add(Case(name, {"x": x}, kernel=3, stride=2, padding=1, ceil_mode=True, **extra))
            add(Case(name, {"x": x}, kernel=2, stride=3, padding=1, ceil_mode=True, **extra))
            add(Case(name, {"x": x}, kernel=3, stride=2, ceil_mode=True, **extra))
    for include in (True, False):
        add(
            Case(
                "avg_pool2d",
                {"x": xs},
                types={"x": TensorType(DType.f32, (B, 3, H, W))},
                env=ENV,
                kernel=(3, 2),
                stride=2,
                padding=(1, 0),
                ceil_mode=True,
                count_include_pad=include,
            )
        )
    add(
        Case(
            "max_pool2d",
            {"x": xs},
            types={"x": TensorType(DType.f32, (B, 3, H, W))},
            env=ENV,
            kernel=2,
            stride=3,
            padding=1,
            ceil_mode=True,
        )
    )
    # 3-d pooling
    x5 = randn(2, 3, 5, 6, 7)
    for name in ("max_pool3d", "avg_pool3d"):
        add(Case(name, {"x": x5}, kernel=2))
        add(Case(name, {"x": x5}, kernel=(3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1)))
        add(Case(name, {"x": x5}, kernel=3, stride=2, padding="same"))
        add(Case(name, {"x": x5}, kernel=3, stride=2, padding=1, ceil_mode=True))
    add(Case("avg_pool3d", {"x": x5}, kernel=3, stride=2, padding=1, count_include_pad=False))
    # an axis smaller than the kernel, which the padding makes fit (F.avg_pool3d refuses it)
    tiny, small = randn(2, 2, 4, 1, 1), randn(2, 2, 2, 2, 2)
    flat = {"x": TensorType(DType.f32, (B, 2, 4, H, W))}
    for include in (True, False):
        add(
            Case(
                "avg_pool3d",
                {"x": tiny},
                kernel=(2, 3, 3),
                padding=(0, 1, 1),
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool3d",
                {"x": small},
                kernel=3,
                stride=2,
                padding=1,
                ceil_mode=True,
                count_include_pad=include,
            )
        )
        add(
            Case(
                "avg_pool3d",
                {"x": randn(2, 2, 4, 9, 8)},
                types=flat,
                env=ENV,
                kernel=3,
                stride=2,
                padding=1,
                ceil_mode=True,
                count_include_pad=include,
            )
        )
    # float64, and "same" with a window below its stride (TensorFlow's 3-d pooling has
    # neither right), on known and symbolic sizes
    x64, xv = randn(2, 3, 5, 6, 7, dtype=np.float64), randn(2, 3, 9, 8, 5)
    volume = {"x": TensorType(DType.f32, (B, 3, H, W, 5))}
    for name, include in (("max_pool3d", True), ("avg_pool3d", True), ("avg_pool3d", False)):
        extra = {} if name == "max_pool3d" else {"count_include_pad": include}
        add(Case(name, {"x": x64}, kernel=2, stride=3, padding="same", **extra))
        add(Case(name, {"x": x64}, kernel=3, stride=2, padding=1, ceil_mode=True, **extra))
        add(
            Case(
                name, {"x": xv}, types=volume, env=ENV, kernel=2, stride=3, padding="same", **extra
            )
        )
    add(
        Case(
            "avg_pool3d",
            {"x": x5},
            kernel=3,
            stride=2,
            padding="same",
            count_include_pad=False,
        )
    )
    add(
        Case(
            "avg_pool3d",
            {"x": x5},
            kernel=3,
            stride=2,
            padding=1,
            ceil_mode=True,
            count_include_pad=False,
        )
    )
    add(Case("global_avg_pool", {"x": x4}))
    add(Case("global_avg_pool", {"x": randn(2, 3, 7)}))
    add(Case("global_avg_pool", {"x": randn(2, 3, 4, 5, 6, dtype=np.float64)}))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=(3, 2)))
    add(Case("adaptive_avg_pool3d", {"x": randn(2, 3, 5, 7, 4)}, size=(3, 2, 4)))
    add(Case("adaptive_avg_pool3d", {"x": randn(2, 3, 5, 7, 4)}, size=1))
    add(Case("adaptive_avg_pool3d", {"x": randn(2, 3, 6, 3, 9, dtype=np.float64)}, size=(4, 1, 2)))
    add(
        Case(
            "adaptive_avg_pool3d",
            {"x": randn(2, 3, 4, 9, 8)},
            types={"x": TensorType(DType.f32, (B, 3, 4, H, W))},
            env=ENV,
            size=(2, H, 1),
        )
    )
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=1))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 6, 6)}, size=4))
    add(
        Case(
            "adaptive_avg_pool2d",
            {"x": randn(2, 3, 9, 8)},
            types={"x": TensorType(DType.f32, (B, 3, H, W))},
            env=ENV,
            size=(H, 1),
        )
    )
    # attention
    q, k, v = randn(2, 3, 5, 8), randn(2, 3, 6, 8), randn(2, 3, 6, 4)
    sdpa = "scaled_dot_product_attention"
    for causal in (False, True):
        add(Case(sdpa, {"q": q, "k": k, "v": v}, causal=causal))
        add(
            Case(
                sdpa, {"q": q, "k": k, "v": v, "mask": attention_mask((2, 1, 1, 6))}, causal=causal
            )
        )
        add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": attention_mask((5, 6))}, causal=causal))
        add(
            Case(
                sdpa,
                {"q": q, "k": k, "v": v, "mask": mask_with_empty_row((2, 3, 5, 6), (1, 2, 3))},
                causal=causal,
            )
        )
    add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": mask_with_empty_row((2, 1, 1, 6), 1)}))
    for causal in (False, True):  # a float bias added to the scores; a given scale
        add(Case(sdpa, {"q": q, "k": k, "v": v, "bias": randn(3, 5, 6)}, causal=causal))
        add(Case(sdpa, {"q": q, "k": k, "v": v, "bias": randn(6)}, causal=causal))  # rank 1
        add(Case(sdpa, {"q": q, "k": k, "v": v}, causal=causal, scale=0.25))
    mask = mask_with_empty_row((2, 3, 5, 6), (1, 2, 3))
    add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": mask, "bias": randn(6)}, scale=2.0))
    add(
        Case(
            sdpa,
            {
                "q": randn(4, 7, dtype=np.float64),
                "k": randn(4, 7, dtype=np.float64),
                "v": randn(4, 7, dtype=np.float64),
            },
        )
    )
    add(Case(sdpa, {"q": randn(3, 5, 8), "k": randn(1, 6, 8), "v": randn(1, 6, 8)}))
    add(
        Case(
            sdpa,
            {
                "q": randn(1, 5, 8),
                "k": randn(3, 6, 8),
                "v": randn(3, 6, 8),
                "mask": mask_with_empty_row((3, 5, 6), (2, 4)),
            },
            causal=True,
        )
    )
    c.extend(loss_cases())
    return c


def loss_cases() -> list:
    """Losses and metrics: class targets with ignored entries, every reduction, float64."""
    c = []
    add = c.append
    rng = np.random.default_rng(14)  # its own draws: the other cases' arrays stay as they were

    def randn(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    def positive(*shape):
        return (rng.random(shape) + 0.1).astype(np.float32)

    labels = np.array([2, 0, -100, 4, 1, 3])
    logits = randn(6, 5) * 3
    add(Case("cross_entropy", {"input": logits, "target": labels}))
    add(Case("cross_entropy", {"input": logits, "target": labels}, label_smoothing=0.1))
    add(
        Case(
            "cross_entropy",
            {"input": randn(2, 4, 3, dtype=np.float64), "target": np.array([[0, 3, 1], [2, 2, 7]])},
            label_smoothing=0.2,
            ignore_index=7,
            reduction="none",
        )
    )
    add(Case("cross_entropy", {"input": logits, "target": labels % 5}, reduction="sum"))
    add(
        Case(
            "cross_entropy",
            {"input": randn(2, 5), "target": np.array([1, 4])},
            types={"input": TensorType(DType.f32, (B, 5)), "target": TensorType(DType.i64, (B,))},
            env=ENV,
        )
    )
    log_probs = np.log(positive(6, 5))
    add(Case("nll", {"input": log_probs, "target": labels}))
    add(Case("nll", {"input": log_probs, "target": labels}, reduction="none"))
    a, b = randn(3, 4), randn(3, 4)
    for op in ("mse", "l1", "smooth_l1", "huber"):
        add(Case(op, {"input": a, "target": b}))
        add(
            Case(
                op,
                {"input": a.astype(np.float64), "target": b.astype(np.float64)},
                reduction="none",
            )
        )
    add(Case("smooth_l1", {"input": a, "target": b}, beta=0.5, reduction="sum"))
    add(Case("huber", {"input": a, "target": b}, delta=0.3))
    probs = positive(3, 4) / 2
    bce = "binary_cross_entropy_with_logits"
    add(Case(bce, {"input": a * 10, "target": probs}))
    add(Case(bce, {"input": a, "target": probs, "pos_weight": positive(4)}, reduction="none"))
    probs[0, 1] = 0  # 0 · log 0 = 0
    add(Case("kl_div", {"input": np.log(positive(3, 4)), "target": probs}))
    add(Case("kl_div", {"input": np.log(positive(3, 4)), "target": probs}, reduction="batchmean"))
    add(
        Case(
            "kl_div",
            {"input": randn(3, 4), "target": randn(3, 4)},
            log_target=True,
            reduction="sum",
        )
    )
    add(Case("accuracy", {"input": logits, "target": labels % 5}))
    add(
        Case(
            "accuracy",
            {"input": randn(2, 4, 3, dtype=np.float64), "target": np.array([[0, 3, 1], [2, 2, 0]])},
        )
    )
    add(Case("top_k_accuracy", {"input": logits, "target": labels % 5}, k=2))
    add(
        Case(
            "top_k_accuracy",
            {"input": _ties().astype(np.float32), "target": np.array([0, 1, 2])},
            k=1,
        )
    )
    c += _weighted_and_soft_class_cases()
    return c


def _weighted_and_soft_class_cases() -> list:
    """Class weights (cross_entropy, nll) and class-probability targets (cross_entropy)."""
    rng = np.random.default_rng(41)
    logits = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    labels = np.array([2, 0, -100, 4, 1, 3])
    weight = (rng.random(5) + 0.2).astype(np.float32)
    soft = rng.random((6, 5)).astype(np.float32)
    soft /= soft.sum(1, keepdims=True)
    wide = rng.standard_normal((2, 4, 3)).astype(np.float64)
    wide_soft = rng.random((2, 4, 3))
    wide_soft /= wide_soft.sum(1, keepdims=True)
    ce, both = "cross_entropy", {"input": logits, "target": labels, "weight": weight}
    return [
        Case(ce, both),
        Case(ce, both, label_smoothing=0.2),
        Case(ce, both, label_smoothing=0.1, reduction="none"),
        Case(ce, {**both, "target": labels % 5}, reduction="sum", label_smoothing=0.3),
        Case("nll", {**both, "input": np.log(rng.random((6, 5)) + 0.1).astype(np.float32)}),
        Case(ce, {"input": logits, "target": soft}),
        Case(ce, {"input": logits, "target": soft, "weight": weight}, label_smoothing=0.25),
        Case(ce, {"input": wide, "target": wide_soft}, reduction="none", label_smoothing=0.1),
        Case(
            ce, {"input": wide, "target": wide_soft, "weight": np.arange(1.0, 5.0)}, reduction="sum"
        ),
    ]


def layer_cases() -> list:
    c = []
    add = c.append
    # free tensors: the layer's result is its one tensor
    add(Case("Parameter", {}, {"shape": (2, 3)}))
    add(Case("Parameter", {}, {"shape": (4, 1, 1), "init": "normal", "std": 0.5}))
    add(Case("Parameter", {}, {"shape": (5,), "trainable": False}))
    add(Case("Buffer", {}, {"shape": (3, 2)}))
    add(Case("Buffer", {}, {"shape": (6,), "dtype": DType.i64}))
    x = randn(2, 3, 8, 8)
    xo = randn(2, 3, 7, 9)
    xs = randn(2, 3, 9, 8)  # [B, 3, H, W] in ENV
    add(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3}))
    add(Case("Conv2d", {"x": x}, {"out": 6, "kernel": 3, "padding": 1, "groups": 3, "bias": False}))
    add(
        Case(
            "Conv2d",
            {"x": xo},
            {"out": 4, "kernel": (3, 2), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
        )
    )
    for inp in (x, xo):  # "same", stride 2, on even and odd sizes
        add(Case("Conv2d", {"x": inp}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"}))
        add(Case("Conv2d", {"x": inp}, {"out": 4, "kernel": 4, "stride": 2, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 3, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 4, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 3, "padding": "same", "dilation": 2}))
    add(
        Case(
            "Conv2d",
            {"x": xs},
            {"out": 4, "kernel": 3, "stride": 2, "padding": "same", "dilation": 2},
            types={"x": TensorType(DType.f32, (B, 3, H, W))},
            env=ENV,
        )
    )
    add(
        Case(
            "Conv2d",
            {"x": xs},
            {"out": 4, "kernel": 3, "stride": 2, "padding": "same"},
            types={"x": TensorType(DType.f32, (B, 3, H, W))},
            env=ENV,
        )
    )
    add(
        Case(
            "Conv1d",
            {"x": randn(2, 4, 11)},
            {"out": 2, "kernel": 4, "stride": 3, "padding": "same"},
        )
    )
    add(Case("Conv1d", {"x": randn(2, 4, 11)}, {"out": 4, "kernel": 3, "groups": 2}))
    add(
        Case(
            "Conv3d",
            {"x": randn(1, 2, 5, 6, 4)},
            {"out": 3, "kernel": (3, 2, 2), "stride": 2, "padding": "same"},
        )
    )
    add(
        Case(
            "Conv3d",
            {"x": randn(1, 2, 5, 6, 4)},
            {"out": 3, "kernel": 3, "padding": 1, "bias": False},
        )
    )
    add(Case("ConvTranspose2d", {"x": randn(2, 4, 5, 6)}, {"out": 3, "kernel": 3}))
    add(
        Case(
            "ConvTranspose2d",
            {"x": randn(2, 4, 5, 6)},
            {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
        )
    )
    add(
        Case(
            "ConvTranspose2d",
            {"x": randn(2, 4, 5, 6)},
            {"out": 2, "kernel": (2, 3), "stride": (2, 3), "dilation": 2, "bias": False},
        )
    )
    add(Case("ConvTranspose1d", {"x": randn(2, 4, 7)}, {"out": 3, "kernel": 3}))
    add(
        Case(
            "ConvTranspose1d",
            {"x": randn(2, 4, 6)},
            {"out": 6, "kernel": 4, "stride": 3, "padding": 2, "output_padding": 2, "groups": 2},
        )
    )
    add(
        Case(
            "ConvTranspose1d",
            {"x": randn(2, 2, 5)},
            {"out": 4, "kernel": 2, "dilation": 3, "output_padding": 2, "padding": 1},
        )
    )
    add(Case("ConvTranspose3d", {"x": randn(2, 4, 3, 4, 5)}, {"out": 3, "kernel": 2, "stride": 2}))
    add(
        Case(
            "ConvTranspose3d",
            {"x": randn(1, 4, 3, 3, 4)},
            {
                "out": 6,
                "kernel": (3, 2, 3),
                "stride": (1, 2, 2),
                "padding": (1, 0, 1),
                "output_padding": (0, 1, 1),
                "groups": 2,
                "bias": False,
            },
        )
    )
    add(
        Case(
            "ConvTranspose3d",
            {"x": randn(1, 2, 3, 3, 3)},
            {"out": 2, "kernel": 2, "stride": 2, "dilation": (1, 2, 1), "output_padding": 1},
        )
    )
    # a 1-tap kernel with a stride > 1 (Keras: stride 1 over the input spread with zeros)
    add(Case("ConvTranspose1d", {"x": randn(2, 3, 5)}, {"out": 2, "kernel": 1, "stride": 3}))
    add(
        Case(
            "ConvTranspose2d",
            {"x": randn(2, 4, 3, 5)},
            {"out": 2, "kernel": 1, "stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0)},
        )
    )
    add(
        Case(
            "ConvTranspose3d",
            {"x": randn(1, 2, 2, 3, 2)},
            {"out": 4, "kernel": 1, "stride": (1, 2, 2), "groups": 2, "dilation": 2},
        )
    )
    add(Case("Linear", {"x": randn(2, 5, 7)}, {"out": 3}))
    add(Case("Linear", {"x": randn(4, 7)}, {"out": 3, "bias": False}))
    add(Case("Embedding", {"ids": RNG.integers(0, 10, (2, 5))}, {"vocab": 10, "dim": 4}))
    add(
        Case(
            "Embedding",
            {"ids": RNG.integers(0, 10, (3,)).astype(np.int32)},
            {"vocab": 10, "dim": 4},
        )
    )
    add(Case("Dropout", {"x": x}, {"p": 0.3}))
    add(Case("StochasticDepth", {"x": x}, {"p": 0.3}))
    add(Case("StochasticDepth", {"x": x}, {"p": 0.2, "mode": "batch"}))
    add(Case("Identity", {"x": x}))
    for shape in ((4, 3), (4, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)):
        add(Case("BatchNorm", {"x": randn(*shape)}, {"eps": 1e-3, "momentum": 0.2}))
    add(Case("BatchNorm", {"x": x}))
    add(Case("LayerNorm", {"x": randn(2, 5, 6)}))
    add(Case("LayerNorm", {"x": randn(2, 5, 6)}, {"axes": 2, "eps": 1e-6}))
    add(Case("LayerNorm", {"x": randn(2, 5, 6)}, {"bias": False}))
    add(Case("LayerNorm2d", {"x": randn(2, 5, 4, 3)}))
    add(Case("LayerNorm2d", {"x": randn(2, 5, 6)}, {"eps": 1e-6, "bias": False}))
    add(Case("LayerNorm2d", {"x": randn(3, 4)}))
    add(
        Case(
            "LayerNorm2d",
            {"x": randn(2, 3, 2, 3, 2)},
            types={"x": TensorType(DType.f32, (B, 3, H, W, 2))},
            env={"B": 2, "H": 2, "W": 3},
        )
    )
    add(Case("RMSNorm", {"x": randn(2, 5, 6)}))  # eps: float32's machine epsilon
    add(Case("RMSNorm", {"x": randn(2, 5, 6)}, {"axes": 2, "eps": 1e-6}))
    add(Case("GroupNorm", {"x": randn(2, 6, 4, 3)}, {"groups": 3}))
    add(Case("GroupNorm", {"x": randn(2, 4, 5)}, {"groups": 2, "eps": 1e-3}))
    for kind in ("LSTM", "GRU"):
        add(Case(kind, {"x": randn(2, 5, 3)}, {"hidden": 4}, param_scale=0.5))
        add(Case(kind, {"x": randn(2, 5, 3)}, {"hidden": 4}, param_scale=0.5, state=True))
        add(
            Case(
                kind,
                {"x": randn(2, 5, 3)},
                {"hidden": 4, "layers": 2, "bidirectional": True},
                param_scale=0.5,
                state=True,
            )
        )
        add(
            Case(
                kind,
                {"x": randn(3, 4, 2)},
                {"hidden": 3, "layers": 2, "bidirectional": True},
                param_scale=0.5,
            )
        )
    dim, heads = 12, 3
    q, kv = randn(2, 4, dim), randn(2, 5, dim)
    mha = "MultiHeadAttention"
    # head size 1, as many queries as heads: Keras's `ops.add` misreads the projections'
    # [heads, 1] biases as a bias add along the sequence (test_upstream_bugs)
    cfg = {"dim": dim, "heads": heads}
    add(Case(mha, {"q": q, "k": kv, "v": kv}, {**cfg, "dropout": 0.3}, param_scale=0.3))
    single = randn(2, heads, heads)
    add(Case(mha, dict.fromkeys("qkv", single), {"dim": heads, "heads": heads}, param_scale=0.3))
    for bias in (True, False):
        bcfg = {**cfg, "bias": bias}
        add(Case(mha, {"q": q, "k": kv, "v": kv}, bcfg, param_scale=0.3))
        add(Case(mha, {"q": q, "k": kv, "v": kv}, bcfg, param_scale=0.3, causal=True))
        for causal in (False, True):
            add(
                Case(
                    mha,
                    {"q": q, "k": kv, "v": kv, "mask": attention_mask((2, 5))},
                    bcfg,
                    param_scale=0.3,
                    causal=causal,
                )
            )
            add(
                Case(
                    mha,
                    {"q": q, "k": kv, "v": kv, "mask": attention_mask((2, 4, 5))},
                    bcfg,
                    param_scale=0.3,
                    causal=causal,
                )
            )
        # fully masked: one query row (3-D mask), one whole batch item (2-D mask)
        add(
            Case(
                mha,
                {"q": q, "k": kv, "v": kv, "mask": mask_with_empty_row((2, 4, 5), (1, 2))},
                bcfg,
                param_scale=0.3,
            )
        )
        add(
            Case(
                mha,
                {"q": q, "k": kv, "v": kv, "mask": mask_with_empty_row((2, 5), 0)},
                bcfg,
                param_scale=0.3,
                causal=True,
            )
        )
    h = randn(3, 6, 8)
    add(
        Case(
            mha,
            {"q": h, "k": h, "v": h, "mask": attention_mask((3, 6))},
            {"dim": 8, "heads": 2},
            param_scale=0.3,
        )
    )
    return c


CASES = function_cases()
LAYER_CASES = layer_cases()


def case_id(case: Case) -> str:
    return case.op


def one_tensor(case: Case) -> bool:
    """A case of a one-input function on an array: the emitter may lower it as a step of a
    Sequential knowing only the result types."""
    tensors = [p.name for p in REGISTRY[case.op].signature.params if p.is_tensor]
    return tensors == ["x"] and isinstance(case.inputs["x"], np.ndarray) and not case.env
