"""The ONNX lowering table: one row per registry op, each adding to a `GraphBuilder` the ONNX
nodes that compute one IR node. This module imports ONNX's protobuf classes (`proto.py`)
and NumPy, never a framework.

A row takes an `OnnxCall` and returns the names of the values holding the node's results (one
per IR output, always outputs of nodes it added); functions and layers have the same form.
Each is an `OnnxRow` of `ROWS`, registered on its op with the oldest opset it works with
(`min_opset`, required); `lower(op, call)` dispatches through the registry
(`rows.lowering_row`) and refuses a graph opset older than the row's (`OpsetTooOld`).
Every row computes exactly the op's NumPy reference, with ONNX operator semantics as the
tie-breaker (CONVENTIONS.md). Op by op:

- Opsets 13-21. Reshape targets are explicit (zero sizes included: `allowzero`, opset 14);
  ReduceMean/Max/Min take their axes as an attribute before opset 18 and as an input from
  18; gelu is a Gelu node from opset 20 and its erf or tanh formula before; mish is Mish
  from 18 and x·tanh(softplus(x)) before; hardsigmoid and hardswish are PyTorch's formula
  (Clip). LayerNorm is LayerNormalization (opset 17). GroupNorm is a decomposition
  (InstanceNormalization over the groups, then the per-channel affine):
  GroupNormalization's scale changed meaning between opsets 18 and 21.
- `padding="same"` is TensorFlow's rule: explicit (asymmetric) pads where the IR has them,
  `auto_pad="SAME_UPPER"` (the same rule) where they depend on a symbolic size. Pooling is
  floor mode (ceil_mode is the rule's extra pads at the end: ONNX's shape inference keeps
  windows PyTorch drops; a count_include_pad=true average divides by pooled ones,
  `_ceil_share`); avg_pool's count_include_pad is explicit. A pooling of a zero `pad`'s result
  has auto_pad="VALID" (its own padding a Pad node): ONNX Runtime would fuse the Pad into it,
  wrongly (`_after_zero_pad`).
- ConvTranspose's output_padding below the stride, as ONNX Runtime wants: beyond it, zero
  rows appended to the input and larger pads (`backends.conv_transpose`).
- upsample is Resize: nearest with asymmetric coordinates and floor (x[i // s]); bilinear
  with half_pixel coordinates (PyTorch's align_corners=False). adaptive_avg_pool2d/3d
  multiplies by the averaging matrix of PyTorch's bins (or takes the mean for size 1).
- Attention is decomposed (MatMul, Softmax): scores of keys a query may not attend are -inf
  and their weights then exactly 0, so a query with no allowed key gets all-zero weights
  (MultiHeadAttention: out_proj's bias); causal is key j ≤ query i (Range, top-left).
- LSTM/GRU are one ONNX node per layer (both directions), time-major with transposes (ONNX
  Runtime has no `layout=1`), weights re-laid out in ONNX's gate order (LSTM i,o,f,c from
  PyTorch's i,f,g,o; GRU z,r,h from r,z,n) with B = [Wb, Rb] and GRU's
  linear_before_reset=1; `state=true` results are [layers·dirs, B, H] as in PyTorch.
- Parameters: a layer's state_dict-named initializers are used as they are (Conv, Gemm,
  Gather, BatchNormalization, LayerNormalization) or through one Transpose/Unsqueeze (which
  ONNX Runtime folds); LSTM/GRU gates and MultiHeadAttention's packed projections become
  re-laid-out constants.
- `//` and `%` follow PyTorch's floor semantics: integer Div truncates, so an integer
  a // b is (a - Mod(a, b)) / b; a float a % b is Mod(fmod=1) moved to the divisor's sign.
  roll is Slice + Concat per axis, shift mod size computed at run time on a symbolic axis.
- expand/broadcast_to are Expand, zeros/ones/full ConstantOfShape, each of a shape whose
  symbolic sizes are computed at run time (`call.size`: Shape/Gather of the inputs); the
  `_like` ops take Shape(x). chunk is Split with its parts' sizes; `x[index]` (take) Gather;
  gather GatherElements.
- ONNX Runtime's CPU kernels of Erf, Elu, Softplus (Mish), AveragePool and Resize take no float64:
  those rows compute a float64 input in float32 (`_in_f32`); Where takes no bool values, so
  a bool `where` is And/Or.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dualnet.backends.common.conv_transpose import transposed_padding
from dualnet.backends.onnx.builder import GraphBuilder
from dualnet.backends.onnx.proto import TensorProto, make_tensor, numpy_dtype
from dualnet.backends.rows import OnnxRow, Rows, lowering_row
from dualnet.ir.types import DType
from dualnet.ops.recurrent import param_names

ONNX_TYPES = {d: d.onnx for d in DType}
NEWEST_OPSET = 21  # the newest opset the table is tested with
_TO_END = 2**63 - 1  # a Slice end past every axis: "to the end"


class OpsetTooOld(ValueError):
    """An op lowered into a graph whose opset is older than its row's `min_opset`."""

    def __init__(self, op: str, minimum: int):
        super().__init__(f"{op} needs ONNX opset {minimum} or newer")
        self.op, self.minimum = op, minimum


@dataclass
class OnnxCall:
    """One IR node as an ONNX row sees it.

    `b`: the graph being built (its `opset` selects node versions). `inputs`: the ONNX value
    name of each tensor argument by signature name (a list for a "tensors" argument, None for
    an absent optional one; a scalar constant is the name of a 0-d constant). `attrs`: the
    node's attributes as the shape rule normalised them; for a layer call
    `{**layer.attrs, **node.attrs}`. `in_types`/`out_types`: TensorTypes (shapes may hold
    symbolic Dims). `params`: a layer's parameter and buffer names → the names of
    initializers holding them in PyTorch layout (state_dict names); `arrays`: the same tensors
    as NumPy arrays, for rows that re-lay them out. `size`: an int or a symbolic Dim → the
    name of an int64 [1] value holding it at run time (needed only for symbolic sizes).
    """

    b: GraphBuilder
    inputs: dict[str, Any]
    attrs: dict[str, Any]
    in_types: dict[str, Any]
    out_types: list[Any]
    params: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    size: Callable[[Any], str] | None = None

    @property
    def dtype(self) -> DType:
        """The element type of the first result."""
        return self.out_types[0].dtype

    def one(self, op_type: str, inputs: list[str | None], **attrs) -> str:
        return self.b.one(op_type, inputs, **attrs)


Row = Callable[[OnnxCall], list[str]]

# ---------------------------------------------------------------- helpers


def _const(call: OnnxCall, value, dtype: DType, hint: str = "const") -> str:
    """A constant of dualnet type `dtype` (a scalar is 0-d, so it broadcasts)."""
    numpy_type = numpy_dtype(ONNX_TYPES[dtype])
    return call.b.constant(np.asarray(value, dtype=numpy_type), hint)


def _int64s(call: OnnxCall, values, hint: str = "shape") -> str:
    """An int64 [len(values)] value of ints, symbolic sizes (computed by `call.size`) and
    int64 [1] values (their names)."""
    values = list(values)
    if all(isinstance(v, int) for v in values):
        return call.b.ints(values, hint)
    parts: list[str] = []
    run: list[int] = []
    for v in values:
        if isinstance(v, int):
            run.append(v)
            continue
        if run:
            parts.append(call.b.ints(run, hint))
            run = []
        parts.append(v if isinstance(v, str) else _size(call, v))
    if run:
        parts.append(call.b.ints(run, hint))
    return call.one("Concat", parts, axis=0)


def _size(call: OnnxCall, d) -> str:
    """An int64 [1] value holding the symbolic size `d`."""
    if call.size is None:
        raise ValueError(f"the symbolic size {d} needs OnnxCall.size")
    return call.size(d)


def _scalar_size(call: OnnxCall, n) -> str:
    """A 0-d int64 value holding size `n`."""
    if isinstance(n, int):
        return call.b.constant(np.asarray(n, dtype=np.int64), "size")
    return call.one("Squeeze", [_size(call, n)])


def _reshape(call: OnnxCall, x: str, shape) -> str:
    """x reshaped to the explicit `shape` (ints and symbolic sizes; a 0 is a size)."""
    return call.one("Reshape", [x, _int64s(call, shape)], allowzero=1)


def _reduce(call: OnnxCall, op_type: str, x: str, axes, keepdims: bool) -> str:
    """A Reduce* node over `axes`: the axes an input from opset 18 (ReduceSum: 13)."""
    axes = [axes] if isinstance(axes, int) else list(axes)
    if op_type == "ReduceSum" or call.b.opset >= 18:
        return call.one(op_type, [x, call.b.ints(axes, "axes")], keepdims=int(keepdims))
    return call.one(op_type, [x], axes=axes, keepdims=int(keepdims))


def _in_f32(call: OnnxCall, x: str, build: Callable[[str, DType], str]) -> str:
    """`build(x, dtype of x)`, for a float64 x computed in float32 (ONNX Runtime's CPU
    kernels of Erf, Elu, Softplus, AveragePool and Resize take no float64), unless the
    graph is built without `float32_fallback` (for a runtime that has them all)."""
    if call.dtype != DType.f64 or not call.b.float32_fallback:
        return build(x, call.dtype)
    y = build(call.one("Cast", [x], to=TensorProto.FLOAT), DType.f32)
    return call.one("Cast", [y], to=TensorProto.DOUBLE)


def _identity(call: OnnxCall, x: str) -> list[str]:
    return [call.one("Identity", [x])]


def _arange(call: OnnxCall, n) -> str:
    """int64 [n]: 0, 1, ..., n - 1."""
    zero, one = (call.b.constant(np.asarray(v, dtype=np.int64), "size") for v in (0, 1))
    return call.one("Range", [zero, _scalar_size(call, n), one])


# ---------------------------------------------------------------- element-wise


def _node(op_type: str, *names: str) -> Row:
    """A row that is one `op_type` node on the named inputs."""

    def lower(call: OnnxCall) -> list[str]:
        return [call.one(op_type, [call.inputs[n] for n in names])]

    return lower


_UNARY = {
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "sin": "Sin",
    "cos": "Cos",
    "abs": "Abs",
    "neg": "Neg",
    "round": "Round",
    "floor": "Floor",
    "stop_gradient": "Identity",
}
_BINARY = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "matmul": "MatMul",
    "lt": "Less",
    "le": "LessOrEqual",
    "gt": "Greater",
    "ge": "GreaterOrEqual",
    "eq": "Equal",
}


def _rsqrt(call: OnnxCall) -> list[str]:
    return [call.one("Reciprocal", [call.one("Sqrt", [call.inputs["x"]])])]


def _silu(call: OnnxCall) -> list[str]:
    x = call.inputs["x"]
    return [call.one("Mul", [x, call.one("Sigmoid", [x])])]


def _gelu(call: OnnxCall) -> list[str]:
    x, approximate = call.inputs["x"], call.attrs["approximate"]
    if approximate == "tanh":  # no Erf: ONNX Runtime computes it in float64 too
        return [_gelu_nodes(call, x, call.dtype, approximate)]
    return [_in_f32(call, x, lambda v, dtype: _gelu_nodes(call, v, dtype, approximate))]


def _gelu_nodes(call: OnnxCall, x: str, dtype: DType, approximate: str) -> str:
    """Gelu (opset 20), else 0.5·x·(1 + erf(x/√2)) or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
    node for node the patterns ONNX Runtime fuses into one Gelu or FastGelu kernel (x/√2 a
    Div, x³ a Pow): written otherwise, a GPT-2 runs 6% slower."""
    if call.b.opset >= 20:
        return call.one("Gelu", [x], approximate=approximate)

    def c(value):
        return _const(call, value, dtype)

    if approximate == "tanh":
        cube = call.one("Pow", [x, c(3.0)])
        inner = call.one("Add", [x, call.one("Mul", [cube, c(0.044715)])])
        t = call.one("Tanh", [call.one("Mul", [inner, c(math.sqrt(2 / math.pi))])])
    else:
        t = call.one("Erf", [call.one("Div", [x, c(math.sqrt(2))])])
    half_x = call.one("Mul", [x, c(0.5)])
    return call.one("Mul", [half_x, call.one("Add", [t, c(1.0)])])


def _leaky_relu(call: OnnxCall) -> list[str]:
    return [call.one("LeakyRelu", [call.inputs["x"]], alpha=call.attrs["slope"])]


def _elu(call: OnnxCall) -> list[str]:
    alpha = call.attrs["alpha"]
    return [_in_f32(call, call.inputs["x"], lambda v, _: call.one("Elu", [v], alpha=alpha))]


def _softplus(call: OnnxCall) -> list[str]:
    """x where beta·x > threshold, else Softplus(beta·x) / beta."""
    x, beta = call.inputs["x"], call.attrs["beta"]
    scaled = x if beta == 1 else call.one("Mul", [x, _const(call, beta, call.dtype)])
    soft = _in_f32(call, scaled, lambda v, _: call.one("Softplus", [v]))
    if beta != 1:
        soft = call.one("Div", [soft, _const(call, beta, call.dtype)])
    above = call.one("Greater", [scaled, _const(call, call.attrs["threshold"], call.dtype)])
    return [call.one("Where", [above, x, soft])]


def _ne(call: OnnxCall) -> list[str]:
    return [call.one("Not", [call.one("Equal", [call.inputs["a"], call.inputs["b"]])])]


def _where(call: OnnxCall) -> list[str]:
    cond, a, b = (call.inputs[n] for n in ("cond", "a", "b"))
    if call.dtype != DType.bool:
        return [call.one("Where", [cond, a, b])]
    either = call.one("And", [call.one("Not", [cond]), b])  # ONNX Runtime: no bool Where
    return [call.one("Or", [call.one("And", [cond, a]), either])]


def _clamp(call: OnnxCall) -> list[str]:
    lo, hi = call.attrs["lo"], call.attrs["hi"]
    if lo is None and hi is None:
        return _identity(call, call.inputs["x"])
    if call.dtype.is_int:  # clip then truncate == clip to truncated bounds
        lo, hi = (None if v is None else math.trunc(v) for v in (lo, hi))
    return [_clip(call, call.inputs["x"], lo, hi)]


def _clip(call: OnnxCall, x: str, lo, hi) -> str:
    """Clip(x, lo, hi), a bound None left out."""
    relu = _relu_before(call, x)
    if relu is not None and call.dtype not in (DType.f32, DType.f16, DType.bf16):
        x, lo = relu.input[0], max(0, 0 if lo is None else lo)  # clip(relu(y)) == clip(y)
    bounds = [
        None if v is None else _const(call, v, call.dtype, name)
        for v, name in ((lo, "lo"), (hi, "hi"))
    ]
    return call.one("Clip", [x, *bounds])


def _relu6(call: OnnxCall) -> list[str]:
    return [_clip(call, call.inputs["x"], 0, 6)]


def _hardsigmoid_of(call: OnnxCall, x: str) -> str:
    """min(max(x + 3, 0), 6) / 6: PyTorch's formula, in every dtype (ONNX Runtime's
    HardSigmoid and HardSwish, x·(1/6) + 0.5, have no float64 kernel)."""
    shifted = call.one("Add", [x, _const(call, 3.0, call.dtype)])
    return call.one("Div", [_clip(call, shifted, 0, 6), _const(call, 6.0, call.dtype)])


def _hardsigmoid(call: OnnxCall) -> list[str]:
    return [_hardsigmoid_of(call, call.inputs["x"])]


def _hardswish(call: OnnxCall) -> list[str]:
    x = call.inputs["x"]
    return [call.one("Mul", [x, _hardsigmoid_of(call, x)])]


def _mish(call: OnnxCall) -> list[str]:
    """Mish (opset 18), else x·tanh(Softplus(x)); float64 in float32 (ONNX Runtime expands
    Mish into Softplus at some opsets, which has no float64 kernel)."""
    x = call.inputs["x"]
    if call.b.opset >= 18:
        return [_in_f32(call, x, lambda v, _: call.one("Mish", [v]))]
    soft = _in_f32(call, x, lambda v, _: call.one("Softplus", [v]))
    return [call.one("Mul", [x, call.one("Tanh", [soft])])]


def _erf(call: OnnxCall) -> list[str]:
    return [_in_f32(call, call.inputs["x"], lambda v, _: call.one("Erf", [v]))]


def _floordiv(call: OnnxCall) -> list[str]:
    """floor(a / b) for floats; for integers (a - a mod b) / b, exact, Mod's result having
    the divisor's sign (Div of integers truncates)."""
    a, b = call.inputs["a"], call.inputs["b"]
    if call.dtype.is_float:
        return [call.one("Floor", [call.one("Div", [a, b])])]
    return [call.one("Div", [call.one("Sub", [a, call.one("Mod", [a, b])]), b])]


def _mod(call: OnnxCall) -> list[str]:
    """Mod (the divisor's sign) for integers; for floats Mod(fmod=1), the dividend's sign,
    plus b where that sign differs from b's and the remainder is not 0 (torch.remainder)."""
    a, b = call.inputs["a"], call.inputs["b"]
    if not call.dtype.is_float:
        return [call.one("Mod", [a, b])]
    r = call.one("Mod", [a, b], fmod=1)
    zero = _const(call, 0, call.dtype)
    signs = call.one("Xor", [call.one("Less", [r, zero]), call.one("Less", [b, zero])])
    wrong = call.one("And", [signs, call.one("Not", [call.one("Equal", [r, zero])])])
    return [call.one("Where", [wrong, call.one("Add", [r, b]), r])]


def _relu_before(call: OnnxCall, x: str):
    """The Relu node computing `x` (through Identities), or None. ONNX Runtime (1.31) fuses
    a Relu into a following Clip whose `min` is given, and fails to load the model where
    that `min` is not a float32, float16 or bfloat16 tensor (tests/backends/
    test_upstream_bugs.py); a Clip of such a type clips the Relu's input instead, its
    `min` raised to 0, which computes the same numbers and leaves no Relu to fuse."""
    node = call.b.producer(x)
    while node is not None and node.op_type == "Identity":
        node = call.b.producer(node.input[0])
    return node if node is not None and node.op_type == "Relu" else None


def _cast(call: OnnxCall) -> list[str]:
    return [call.one("Cast", [call.inputs["x"]], to=ONNX_TYPES[call.attrs["dtype"]])]


# ---------------------------------------------------------------- reductions


def _reduction(op_type: str) -> Row:
    def lower(call: OnnxCall) -> list[str]:
        return [
            _reduce(call, op_type, call.inputs["x"], call.attrs["axis"], call.attrs["keepdims"])
        ]

    return lower


def _arg(op_type: str) -> Row:
    def lower(call: OnnxCall) -> list[str]:  # select_last_index=0: the first on ties
        return [
            call.one(
                op_type,
                [call.inputs["x"]],
                axis=call.attrs["axis"],
                keepdims=int(call.attrs["keepdims"]),
            )
        ]

    return lower


def _cumsum(call: OnnxCall) -> list[str]:
    axis = call.b.constant(np.asarray(call.attrs["axis"], dtype=np.int64), "axis")
    return [call.one("CumSum", [call.inputs["x"], axis])]


def _softmax(op_type: str) -> Row:
    def lower(call: OnnxCall) -> list[str]:
        return [call.one(op_type, [call.inputs["x"]], axis=call.attrs["axis"])]

    return lower


# ---------------------------------------------------------------- shape ops


def _flatten(call: OnnxCall) -> list[str]:
    x = call.inputs["x"]
    if call.attrs["start"] == 1:  # ONNX Flatten's 2-d result
        return [call.one("Flatten", [x], axis=1)]
    return [_reshape(call, x, call.out_types[0].shape)]


def _reshape_row(call: OnnxCall) -> list[str]:
    return [_reshape(call, call.inputs["x"], call.attrs["dims"])]


def _permute(call: OnnxCall) -> list[str]:
    return [call.one("Transpose", [call.inputs["x"]], perm=call.attrs["axes"])]


def _transpose(call: OnnxCall) -> list[str]:
    return [call.one("Transpose", [call.inputs["x"]], perm=call.attrs["perm"])]


def _concat(call: OnnxCall) -> list[str]:
    return [call.one("Concat", list(call.inputs["xs"]), axis=call.attrs["axis"])]


def _split(call: OnnxCall) -> list[str]:
    sizes = call.attrs["sizes"]
    return call.b.node(
        "Split",
        [call.inputs["x"], _int64s(call, sizes, "sizes")],
        len(sizes),
        axis=call.attrs["axis"],
    )


def _stack(call: OnnxCall) -> list[str]:
    axes = call.b.ints([call.attrs["axis"]], "axes")
    parts = [call.one("Unsqueeze", [x, axes]) for x in call.inputs["xs"]]
    return [call.one("Concat", parts, axis=call.attrs["axis"]) if len(parts) > 1 else parts[0]]


def _roll(call: OnnxCall) -> list[str]:
    """Per axis, Concat(x[n - s:], x[:n - s]) with s = shift mod n: n - s computed here for a
    known size n, at run time (Mod of int64s: the divisor's sign) for a symbolic one."""
    y = call.inputs["x"]
    shape = call.in_types["x"].shape
    for shift, axis in zip(call.attrs["shift"], call.attrs["axis"], strict=True):
        n = shape[axis]
        if isinstance(n, int):
            if shift % n == 0:
                continue
            cut = call.b.ints([n - shift % n], "cut")
        else:
            size = _size(call, n)
            cut = call.one("Sub", [size, call.one("Mod", [call.b.ints([shift], "shift"), size])])
        axes = call.b.ints([axis], "axes")
        head = call.one("Slice", [y, cut, call.b.ints([_TO_END], "ends"), axes])
        tail = call.one("Slice", [y, call.b.ints([0], "starts"), cut, axes])
        y = call.one("Concat", [head, tail], axis=axis)
    return _identity(call, y) if y == call.inputs["x"] else [y]


def _unsqueeze(call: OnnxCall) -> list[str]:
    return [call.one("Unsqueeze", [call.inputs["x"], call.b.ints([call.attrs["axis"]], "axes")])]


def _squeeze(call: OnnxCall) -> list[str]:
    return [call.one("Squeeze", [call.inputs["x"], call.b.ints([call.attrs["axis"]], "axes")])]


def _pad(call: OnnxCall) -> list[str]:
    pairs = call.attrs["pads"]
    pads = [before for before, _ in pairs] + [after for _, after in pairs]
    if not any(pads):
        return _identity(call, call.inputs["x"])
    value = _const(call, call.attrs["value"], call.dtype, "value")
    return [call.one("Pad", [call.inputs["x"], call.b.ints(pads, "pads"), value])]


_RESIZE = {
    "nearest": {
        "mode": "nearest",
        "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor",
    },
    "bilinear": {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
}


def _upsample(call: OnnxCall) -> list[str]:
    scales = call.b.constant(np.array([1, 1, *call.attrs["scale"]], dtype=np.float32), "scales")
    attrs = _RESIZE[call.attrs["mode"]]
    return [
        _in_f32(call, call.inputs["x"], lambda v, _: call.one("Resize", [v, "", scales], **attrs))
    ]


def _slice_bound(b, d):
    """A Slice bound: non-negative ints as they are; on a symbolic axis d, d + c as c < 0,
    d itself as "to the end", other symbolic bounds as they are (computed at run time)."""
    if isinstance(b, int):
        return b
    offset = b - d
    if isinstance(offset, int):
        return offset if offset < 0 else _TO_END
    return b


def _getitem(call: OnnxCall) -> list[str]:
    """One Slice over the axes not taken whole (an index i is i:i+1), a Squeeze of the
    indexed axes, then an Unsqueeze of the new ones (`none`)."""
    x = call.inputs["x"]
    shape = call.in_types["x"].shape
    axes, starts, ends, steps, indexed, new = [], [], [], [], [], []
    axis, out = -1, 0  # the input axis, the output axes so far
    for item in call.attrs["items"]:
        if item[0] == "new":
            new.append(out)
            out += 1
            continue
        axis += 1
        d = shape[axis]
        out += item[0] != "index"
        if item[0] == "index":
            start, stop, step = item[1], item[1] + 1, 1
            indexed.append(axis)
        else:
            _, start, stop, step = item
            if start == 0 and stop == d and step == 1:
                continue
        axes.append(axis)
        starts.append(_slice_bound(start, d))
        ends.append(_slice_bound(stop, d))
        steps.append(step)
    if not axes and not new:
        return _identity(call, x)
    y = x
    if axes:
        y = call.one(
            "Slice",
            [
                x,
                _int64s(call, starts, "starts"),
                _int64s(call, ends, "ends"),
                call.b.ints(axes, "axes"),
                call.b.ints(steps, "steps"),
            ],
        )
    if indexed:
        y = call.one("Squeeze", [y, call.b.ints(indexed, "axes")])
    if new:
        y = call.one("Unsqueeze", [y, call.b.ints(new, "axes")])
    return [y]


def _expand(call: OnnxCall) -> list[str]:
    """Expand to the result's shape, symbolic sizes computed at run time (`call.size`)."""
    return [call.one("Expand", [call.inputs["x"], _int64s(call, call.attrs["shape"])])]


def _take(call: OnnxCall) -> list[str]:
    return [call.one("Gather", [call.inputs["x"], call.inputs["index"]], axis=call.attrs["axis"])]


def _gather(call: OnnxCall) -> list[str]:
    x, index = call.inputs["x"], call.inputs["index"]
    return [call.one("GatherElements", [x, index], axis=call.attrs["axis"])]


def _filled(value) -> Row:
    """zeros, ones (`value`), full (None: the `value` attribute) of the shape attribute, or
    of x's shape for the `_like` ops: ConstantOfShape."""

    def lower(call: OnnxCall) -> list[str]:
        x = call.inputs.get("x")
        shape = call.one("Shape", [x]) if x else _int64s(call, call.attrs["shape"])
        fill = call.attrs["value"] if value is None else value
        value_tensor = make_tensor("value", ONNX_TYPES[call.dtype], [1], [fill])
        return [call.one("ConstantOfShape", [shape], value=value_tensor)]

    return lower


def _tensor_literal(call: OnnxCall) -> list[str]:
    """tensor: a Constant of the nested numbers."""
    values = np.array(call.attrs["data"]).reshape(-1).tolist()
    shape = list(call.attrs["shape"])
    value = make_tensor("value", ONNX_TYPES[call.dtype], shape, values)
    return [call.one("Constant", [], value=value)]


def _arange_row(call: OnnxCall) -> list[str]:
    return [_arange(call, call.attrs["n"])]


# ---------------------------------------------------------------- pooling


def _padded(
    call: OnnxCall, x: str, fill: float = 0.0, pool: bool = False
) -> tuple[str, dict, str | None]:
    """(input, window attributes, pads of a Pad node it added) of a window op. Explicit pads
    are the `pads` attribute. TensorFlow's "same" rule on symbolic sizes (None in the IR) is
    auto_pad=SAME_UPPER where ONNX Runtime pads exactly so — no dilation, no window shorter
    than its stride (it would pad negatively) — else a Pad node (filled with `fill`) with
    pads computed at run time. A pooling (`pool`) of a zero Pad's result is written so that
    ONNX Runtime cannot fuse that Pad into it (`_after_zero_pad`): auto_pad="VALID", its own
    padding a Pad node."""
    attrs = call.attrs
    window = {"kernel_shape": attrs["kernel"], "strides": attrs["stride"]}
    pads = attrs["pads"]
    if None not in pads:
        flat = [p[0] for p in pads] + [p[1] for p in pads]
        if not (pool and _after_zero_pad(call, x)):
            return x, {**window, "pads": flat}, None
        if not any(flat):
            return x, {**window, "auto_pad": "VALID"}, None
        added = call.b.ints([0, 0, *flat[: len(pads)], 0, 0, *flat[len(pads) :]], "pads")
        value = _const(call, fill, call.dtype, "fill") if fill else None
        return call.one("Pad", [x, added, value]), {**window, "auto_pad": "VALID"}, added
    dilation = attrs.get("dilation", (1,) * len(pads))
    if all(
        d == 1 and k >= s
        for k, s, d in zip(attrs["kernel"], attrs["stride"], dilation, strict=True)
    ):
        return x, {**window, "auto_pad": "SAME_UPPER"}, None
    runtime = _runtime_same_pads(call, dilation)
    value = _const(call, fill, call.dtype, "fill") if fill else None
    return call.one("Pad", [x, runtime, value]), window, runtime


def _after_zero_pad(call: OnnxCall, x: str) -> bool:
    """Whether `x` is computed by a Pad with the value 0 (through Casts, and Identities that
    ONNX Runtime may remove first). ONNX Runtime (1.31) fuses such a Pad into a following
    MaxPool or AveragePool with explicit pads, adding its pads to the pool's: a MaxPool then
    pads with -inf where zeros were asked for (wrong numbers), and an AveragePool whose pads
    reach its kernel fails to load (tests/backends/test_upstream_bugs.py shows both)."""
    node = call.b.producer(x)
    while node is not None and node.op_type in ("Cast", "Identity"):
        node = call.b.producer(node.input[0])
    if node is None or node.op_type != "Pad":
        return False
    value = (
        call.b.constant_value(node.input[2])
        if len(node.input) > 2 and node.input[2]
        else np.zeros(())
    )
    return value is None or not value.any()


def _runtime_same_pads(call: OnnxCall, dilation) -> str:
    """Pad's pads of TensorFlow's "same" rule where they depend on symbolic sizes: symbolic
    sizes, or run-time values where the total may be negative (a window shorter than its
    stride; clamped to 0)."""
    attrs = call.attrs
    befores, afters = [0, 0], [0, 0]
    for n, k, s, d, pad in zip(
        call.in_types["x"].shape[2:],
        attrs["kernel"],
        attrs["stride"],
        dilation,
        attrs["pads"],
        strict=True,
    ):
        if pad is None:
            window = (k - 1) * d + 1
            total = ((n + s - 1) // s - 1) * s + window - n
            if window < s:
                total = call.one("Max", [_size(call, total), call.b.ints([0], "zero")])
                pad = (call.one("Div", [total, call.b.ints([2], "two")]),)
                pad += (call.one("Sub", [total, pad[0]]),)
            else:
                pad = (total // 2, total - total // 2)
        befores.append(pad[0])
        afters.append(pad[1])
    return _int64s(call, befores + afters, "pads")


def _max_pool(call: OnnxCall) -> list[str]:
    x, window, _ = _padded(call, call.inputs["x"], -np.inf, pool=True)
    return [call.one("MaxPool", [x], **window)]


def _avg_pool(call: OnnxCall) -> list[str]:
    return [_in_f32(call, call.inputs["x"], lambda v, dtype: _avg_pool_nodes(call, v, dtype))]


def _avg_pool_nodes(call: OnnxCall, x: str, dtype: DType) -> str:
    """AveragePool; where a Pad node pads and padding is not counted, the mean of the padded
    input divided by the pooled share of real elements."""
    include = call.attrs["count_include_pad"]
    padded, window, added = _padded(call, x, pool=True)
    mean = call.one("AveragePool", [padded], count_include_pad=int(include), **window)
    if include and call.attrs["ceil_mode"]:
        return call.one("Div", [mean, _ceil_share(call, x, dtype)])
    if added is None or include:
        return mean
    one = make_tensor("one", ONNX_TYPES[dtype], [1], [1])
    ones = call.one("ConstantOfShape", [call.one("Shape", [x])], value=one)
    share = call.one("AveragePool", [call.one("Pad", [ones, added])], **window)
    return call.one("Div", [mean, share])


def _ceil_share(call: OnnxCall, x: str, dtype: DType) -> str:
    """count_include_pad with ceil_mode: each window's share of elements in the input and its
    padding (p, p), not in the last window's extra padding after it — ones of the size padded
    by (p, p), pooled over that extra padding alone (a ConstantOfShape: no Pad to fuse)."""
    attrs = call.attrs
    grow = call.b.ints([0, 0, *(2 * p for p, _ in attrs["pads"])], "grow")
    one = make_tensor("one", ONNX_TYPES[dtype], [1], [1])
    ones = call.one("ConstantOfShape", [call.one("Add", [call.one("Shape", [x]), grow])], value=one)
    extra = [0] * len(attrs["pads"]) + [after - p for p, after in attrs["pads"]]
    return call.one(
        "AveragePool",
        [ones],
        kernel_shape=attrs["kernel"],
        strides=attrs["stride"],
        pads=extra,
        count_include_pad=1,
    )


def _global_avg_pool(call: OnnxCall) -> list[str]:
    """float32: GlobalAveragePool then Flatten, which ONNX Runtime runs in its blocked (NCHWc)
    layout next to the convolutions (a ReduceMean needs the layout converted back first);
    other dtypes (no GlobalAveragePool kernel in ONNX Runtime): ReduceMean."""
    if call.in_types["x"].dtype != DType.f32:
        return [_reduce(call, "ReduceMean", call.inputs["x"], call.attrs["axes"], False)]
    pooled = call.one("GlobalAveragePool", [call.inputs["x"]])
    return [call.one("Flatten", [pooled], axis=1)]


def _adaptive_avg_pool(call: OnnxCall) -> list[str]:
    """Per spatial axis: nothing where the size is kept, the mean for size 1, else a MatMul
    by the averaging matrix of PyTorch's windows (the depth of a volume moved last for it)."""
    x = y = call.inputs["x"]
    spatial = call.in_types["x"].shape[2:]
    rank = len(spatial) + 2
    for axis, n, size, bins in zip(
        range(2, rank), spatial, call.attrs["size"], call.attrs["bins"], strict=True
    ):
        if size == n:
            continue
        if size == 1:
            y = _reduce(call, "ReduceMean", y, axis, True)
            continue
        weights = np.zeros((n, size))
        for j, (lo, hi) in enumerate(bins):
            weights[lo:hi, j] = 1 / (hi - lo)
        if axis == rank - 1:
            y = call.one("MatMul", [y, _const(call, weights, call.dtype, "bins")])
        elif axis == rank - 2:
            y = call.one("MatMul", [_const(call, weights.T, call.dtype, "bins"), y])
        else:  # [B, C, D, H, W] → [B, C, H, W, D], pooled, and back
            last = [0, 1, 3, 4, 2]
            y = call.one("Transpose", [y], perm=last)
            y = call.one("MatMul", [y, _const(call, weights, call.dtype, "bins")])
            y = call.one("Transpose", [y], perm=[0, 1, 4, 2, 3])
    return _identity(call, x) if y == x else [y]


# ---------------------------------------------------------------- attention


def _swap_last(rank: int) -> list[int]:
    return [*range(rank - 2), rank - 1, rank - 2]


def _attend(
    call: OnnxCall,
    q: str,
    k: str,
    v: str,
    k_rank: int,
    d,
    keep: str | None,
    bias: str | None = None,
    scale: float | None = None,
) -> str:
    """softmax(q kᵀ · scale + bias) v, scale 1/√d unless given; where `keep` (bool,
    broadcast to the scores) is false the weight is 0 — a query with no allowed key gets
    all-zero weights. A symbolic d is read at run time."""
    kt = call.one("Transpose", [k], perm=_swap_last(k_rank))
    product = call.one("MatMul", [q, kt])
    if scale is not None or isinstance(d, int):
        factor = 1 / math.sqrt(d) if scale is None else float(scale)
        scores = call.one("Mul", [product, _const(call, factor, call.dtype, "scale")])
    else:
        size = call.one("Cast", [_scalar_size(call, d)], to=ONNX_TYPES[call.dtype])
        scores = call.one("Div", [product, call.one("Sqrt", [size])])
    if bias is not None:
        scores = call.one("Add", [scores, bias])
    if keep is None:
        weights = call.one("Softmax", [scores], axis=-1)
    else:
        masked = call.one("Where", [keep, scores, _const(call, -np.inf, call.dtype, "-inf")])
        weights = call.one("Softmax", [masked], axis=-1)
        weights = call.one("Where", [keep, weights, _const(call, 0, call.dtype, "zero")])
    return call.one("MatMul", [weights, v])


def _keep(call: OnnxCall, mask: str | None, tq, tk) -> str | None:
    """Where attention is allowed: `mask`, and with `causal` key j ≤ query i (top-left);
    None where every key is."""
    if not call.attrs["causal"]:
        return mask
    rows = call.one("Unsqueeze", [_arange(call, tq), call.b.ints([1], "axes")])
    causal = call.one("GreaterOrEqual", [rows, _arange(call, tk)])
    return causal if mask is None else call.one("And", [mask, causal])


def _sdpa(call: OnnxCall) -> list[str]:
    q, k, v = (call.inputs[n] for n in ("q", "k", "v"))
    qt, kt = call.in_types["q"], call.in_types["k"]
    keep = _keep(call, call.inputs.get("mask"), qt.shape[-2], kt.shape[-2])
    bias, scale = call.inputs.get("bias"), call.attrs["scale"]
    return [_attend(call, q, k, v, kt.rank, qt.shape[-1], keep, bias, scale)]


# ---------------------------------------------------------------- layers


def _dense(call: OnnxCall, x: str, weight_t: str, bias: str | None) -> str:
    """x · weight_t (+ bias)."""
    y = call.one("MatMul", [x, weight_t])
    return y if bias is None else call.one("Add", [y, bias])


def _transposed(call: OnnxCall, weight: str) -> str:
    return call.one("Transpose", [weight], perm=[1, 0])


def _linear(call: OnnxCall) -> list[str]:
    x, weight, bias = call.inputs["x"], call.params["weight"], call.params.get("bias")
    if call.in_types["x"].rank == 2:
        return [call.one("Gemm", [x, weight, bias], transB=1)]
    return [_dense(call, x, _transposed(call, weight), bias)]


def _conv(call: OnnxCall) -> list[str]:
    attrs = call.attrs
    x, window, _ = _padded(call, call.inputs["x"])
    inputs = [x, call.params["weight"], call.params.get("bias")]
    return [call.one("Conv", inputs, dilations=attrs["dilation"], group=attrs["groups"], **window)]


def _conv_transpose(call: OnnxCall) -> list[str]:
    """ConvTranspose, its pads PyTorch's padding; an output padding not below the stride
    (ONNX Runtime refuses it) comes from zero rows appended to the input
    (`backends.conv_transpose`)."""
    attrs, padding = call.attrs, transposed_padding(call.attrs)
    x, rows = call.inputs["x"], padding.rows
    if any(rows):
        x = call.one("Pad", [x, call.b.ints([0] * (len(rows) + 2) + [0, 0, *rows], "pads")])
    pads = [before for before, _ in padding.crops] + [after for _, after in padding.crops]
    inputs = [x, call.params["weight"], call.params.get("bias")]
    return [
        call.one(
            "ConvTranspose",
            inputs,
            dilations=attrs["dilation"],
            group=attrs["groups"],
            kernel_shape=attrs["kernel"],
            strides=attrs["stride"],
            pads=pads,
            output_padding=list(padding.output_padding),
        )
    ]


def _embedding(call: OnnxCall) -> list[str]:
    return [call.one("Gather", [call.params["weight"], call.inputs["ids"]], axis=0)]


def _batchnorm(call: OnnxCall) -> list[str]:
    """Inference with the running statistics (ONNX's momentum is 1 - PyTorch's)."""
    p = call.params
    inputs = [call.inputs["x"], p["weight"], p["bias"], p["running_mean"], p["running_var"]]
    return [
        call.one(
            "BatchNormalization",
            inputs,
            epsilon=call.attrs["eps"],
            momentum=1 - call.attrs["momentum"],
        )
    ]


def _layernorm(call: OnnxCall, x: str | None = None, axes: int | None = None) -> list[str]:
    p = call.params
    return [
        call.one(
            "LayerNormalization",
            [x or call.inputs["x"], p["weight"], *([p["bias"]] if "bias" in p else [])],
            axis=-(axes or call.attrs["axes"]),
            epsilon=call.attrs["eps"],
        )
    ]


def _layernorm2d(call: OnnxCall) -> list[str]:
    """LayerNormalization over the last axis, between Transposes moving axis 1 there and back."""
    x, rank = call.inputs["x"], call.out_types[0].rank
    if rank == 2:
        return _layernorm(call, x, 1)
    last = call.one("Transpose", [x], perm=[0, *range(2, rank), 1])
    y = _layernorm(call, last, 1)[0]
    return [call.one("Transpose", [y], perm=[0, rank - 1, *range(1, rank - 1)])]


def _rmsnorm(call: OnnxCall) -> list[str]:
    """x · 1/sqrt(mean(x²) + eps) · weight over the last `axes` axes (ONNX's
    RMSNormalization is opset 23)."""
    x, rank = call.inputs["x"], call.out_types[0].rank
    axes = list(range(rank - call.attrs["axes"], rank))
    mean = _reduce(call, "ReduceMean", call.one("Mul", [x, x]), axes, keepdims=True)
    eps = _const(call, call.attrs["eps"], call.dtype, "eps")
    scale = call.one("Reciprocal", [call.one("Sqrt", [call.one("Add", [mean, eps])])])
    return [call.one("Mul", [call.one("Mul", [x, scale]), call.params["weight"]])]


def _groupnorm(call: OnnxCall) -> list[str]:
    """[B, C, ...] as [B, groups, rest], InstanceNormalization (unit scale), then the
    per-channel weight and bias."""
    shape = call.out_types[0].shape
    groups, channels = call.attrs["groups"], shape[1]
    rest = math.prod(shape[2:], start=channels // groups)
    grouped = _reshape(call, call.inputs["x"], (shape[0], groups, rest))
    ones, zeros = (_const(call, np.full(groups, v), call.dtype, "unit") for v in (1, 0))
    normed = call.one("InstanceNormalization", [grouped, ones, zeros], epsilon=call.attrs["eps"])
    y = _reshape(call, normed, shape)
    trailing = call.b.ints(range(1, len(shape) - 1), "axes")
    weight, bias = (
        call.one("Unsqueeze", [call.params[n], trailing]) if len(shape) > 2 else call.params[n]
        for n in ("weight", "bias")
    )
    return [call.one("Add", [call.one("Mul", [y, weight]), bias])]


# ONNX's gate order as PyTorch's gate blocks: LSTM i,o,f,c of i,f,g,o; GRU z,r,h of r,z,n
_GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}


def _rnn_weights(call: OnnxCall, kind: str, layer: int) -> list[str]:
    """W, R and B of one layer (both directions) in ONNX's layout and gate order."""
    order = _GATES[kind]
    suffixes = [
        sfx
        for k, _, sfx in param_names(call.attrs["layers"], call.attrs["bidirectional"])
        if k == layer
    ]

    def gates(name: str) -> list[np.ndarray]:
        return [
            np.concatenate([np.split(call.arrays[f"{name}{sfx}"], len(order))[i] for i in order])
            for sfx in suffixes
        ]

    biases = [np.concatenate(pair) for pair in zip(gates("bias_ih"), gates("bias_hh"), strict=True)]
    return [
        call.b.constant(np.stack(arrays), f"{name}_l{layer}")
        for name, arrays in (("W", gates("weight_ih")), ("R", gates("weight_hh")), ("B", biases))
    ]


def _rnn(kind: str) -> Row:
    def lower(call: OnnxCall) -> list[str]:
        attrs = call.attrs
        hidden, layers, dirs = attrs["hidden"], attrs["layers"], attrs["directions"]
        batch, steps, _ = call.in_types["x"].shape
        extra = {"linear_before_reset": 1} if kind == "GRU" else {}
        seq = call.one("Transpose", [call.inputs["x"]], perm=[1, 0, 2])  # [T, B, F]
        states: list[list[str]] = []
        for layer in range(layers):
            y, *layer_states = call.b.node(
                kind,
                [seq, *_rnn_weights(call, kind, layer)],
                3 if kind == "LSTM" else 2,
                hidden_size=hidden,
                direction="bidirectional" if dirs == 2 else "forward",
                **extra,
            )
            states.append(layer_states)
            last = layer == layers - 1  # y: [T, dirs, B, H] → [B, T, dirs·H] or [T, B, dirs·H]
            y = call.one("Transpose", [y], perm=[2, 0, 1, 3] if last else [0, 2, 1, 3])
            seq = _reshape(
                call, y, (batch, steps, dirs * hidden) if last else (steps, batch, dirs * hidden)
            )
        if not attrs.get("state", False):
            return [seq]
        return [
            seq,
            *(
                _concat_states(call, list(layer_states))
                for layer_states in zip(*states, strict=True)
            ),
        ]

    return lower


def _concat_states(call: OnnxCall, states: list[str]) -> str:
    """Per-layer [dirs, B, H] states as PyTorch's [layers·dirs, B, H]."""
    return states[0] if len(states) == 1 else call.one("Concat", states, axis=0)


def _mha(call: OnnxCall) -> list[str]:
    """PyTorch's nn.MultiheadAttention (batch first), decomposed."""
    dim, heads = call.attrs["dim"], call.attrs["heads"]
    batch, tq, _ = call.in_types["q"].shape
    tk = call.in_types["k"].shape[1]
    q, k, v = (_heads(call, name, i) for i, name in enumerate("qkv"))
    mask = call.inputs.get("mask")
    if mask is not None:  # [B, Tk] → [B, 1, 1, Tk]; [B, Tq, Tk] → [B, 1, Tq, Tk]
        axes = [1, 2] if call.in_types["mask"].rank == 2 else [1]
        mask = call.one("Unsqueeze", [mask, call.b.ints(axes, "axes")])
    o = _attend(call, q, k, v, 4, dim // heads, _keep(call, mask, tq, tk))
    o = _reshape(call, call.one("Transpose", [o], perm=[0, 2, 1, 3]), (batch, tq, dim))
    weight = _transposed(call, call.params["out_proj.weight"])
    return [_dense(call, o, weight, call.params.get("out_proj.bias"))]


def _heads(call: OnnxCall, name: str, i: int) -> str:
    """Input `name` projected by slice i of the packed in_proj, as [B, heads, T, head_dim]."""
    dim, heads = call.attrs["dim"], call.attrs["heads"]
    rows = slice(i * dim, (i + 1) * dim)
    weight = call.b.constant(call.arrays["in_proj_weight"][rows].T, f"{name}_proj.weight")
    bias = call.arrays.get("in_proj_bias")
    if bias is not None:
        bias = call.b.constant(bias[rows], f"{name}_proj.bias")
    batch, steps, _ = call.in_types[name].shape
    y = _reshape(
        call, _dense(call, call.inputs[name], weight, bias), (batch, steps, heads, dim // heads)
    )
    return call.one("Transpose", [y], perm=[0, 2, 1, 3])


# ---------------------------------------------------------------- losses and metrics


def _loss_reduction(call: OnnxCall, loss: str) -> str:
    """A per-element loss reduced as PyTorch does: mean, sum, batchmean (the sum over the
    size of axis 0) or none."""
    reduction = call.attrs["reduction"]
    if reduction == "none":
        return loss
    if reduction == "mean":
        return call.one("ReduceMean", [loss], keepdims=0)
    total = call.one("ReduceSum", [loss], keepdims=0)
    if reduction == "sum":
        return total
    batch = call.one("Gather", [call.one("Shape", [loss]), call.b.constant(np.int64(0), "axis")])
    return call.one("Div", [total, call.one("Cast", [batch], to=ONNX_TYPES[call.dtype])])


def _picked(call: OnnxCall, x: str, index: str) -> str:
    """x[n, index[n, ...], ...] of x [N, C, ...] and index [N, ...]."""
    axis = call.b.ints([1], "axes")
    unsqueezed = call.one("Unsqueeze", [index, axis])
    return call.one("Squeeze", [call.one("GatherElements", [x, unsqueezed], axis=1), axis])


def _class_weights(call: OnnxCall, weight: str, rank: int) -> str:
    """Class weights [C] shaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return call.one("Reshape", [weight, call.b.ints([1, -1] + [1] * (rank - 2), "shape")])


def _class_loss(call: OnnxCall, log_probs: str, smoothing: float = 0.0) -> list[str]:
    """PyTorch's nll_loss (with `smoothing`, cross_entropy's label smoothing; with `weight`,
    one weight per class); a target equal to ignore_index counts for nothing, and the mean
    is over the others (divided by their weights' sum)."""
    target, dtype, weight = call.inputs["target"], call.dtype, call.inputs.get("weight")
    ignore = call.b.constant(np.int64(call.attrs["ignore_index"]), "ignore_index")
    keep = call.one("Not", [call.one("Equal", [target, ignore])])
    index = call.one("Where", [keep, target, call.b.constant(np.int64(0), "zero")])
    loss = call.one("Neg", [_picked(call, log_probs, index)])
    scale = None if weight is None else call.one("Gather", [weight, index], axis=0)
    if scale is not None:
        loss = call.one("Mul", [scale, loss])
    if smoothing:
        rank = call.in_types["input"].rank
        weighted = (
            log_probs
            if weight is None
            else call.one("Mul", [log_probs, _class_weights(call, weight, rank)])
        )
        uniform = _reduce(call, "ReduceMean", weighted, [1], False)
        loss = call.one(
            "Sub",
            [
                call.one("Mul", [loss, _const(call, 1 - smoothing, dtype)]),
                call.one("Mul", [uniform, _const(call, smoothing, dtype)]),
            ],
        )
    loss = call.one("Where", [keep, loss, _const(call, 0, dtype)])
    if call.attrs["reduction"] != "mean":
        return [_loss_reduction(call, loss)]
    counted = (
        call.one("Cast", [keep], to=ONNX_TYPES[dtype])
        if scale is None
        else call.one("Where", [keep, scale, _const(call, 0, dtype)])
    )
    count = call.one("ReduceSum", [counted], keepdims=0)
    return [call.one("Div", [call.one("ReduceSum", [loss], keepdims=0), count])]


def _cross_entropy(call: OnnxCall) -> list[str]:
    log_probs = call.one("LogSoftmax", [call.inputs["input"]], axis=1)
    smoothing = call.attrs["label_smoothing"]
    if not call.in_types["target"].dtype.is_float:
        return _class_loss(call, log_probs, smoothing)
    # class probabilities: -Σ_c weight_c·((1 - ε)·t_c + ε/C)·log_softmax_c
    x_type, dtype = call.in_types["input"], call.dtype
    target = call.inputs["target"]
    if smoothing:
        classes = call.one(
            "Gather", [call.one("Shape", [log_probs]), call.b.constant(np.int64(1), "axis")]
        )
        spread = call.one(
            "Div",
            [_const(call, smoothing, dtype), call.one("Cast", [classes], to=ONNX_TYPES[dtype])],
        )
        target = call.one(
            "Add", [call.one("Mul", [target, _const(call, 1 - smoothing, dtype)]), spread]
        )
    weight = call.inputs.get("weight")
    if weight is not None:
        target = call.one("Mul", [target, _class_weights(call, weight, x_type.rank)])
    terms = call.one("Mul", [target, log_probs])
    loss = call.one("Neg", [_reduce(call, "ReduceSum", terms, [1], False)])
    return [_loss_reduction(call, loss)]


def _pointwise_loss(build: Callable[[OnnxCall, str, str], str]) -> Row:
    """The loss `build(call, input, target)` per element, reduced."""

    def lower(call: OnnxCall) -> list[str]:
        return [_loss_reduction(call, build(call, call.inputs["input"], call.inputs["target"]))]

    return lower


def _difference(call: OnnxCall, x: str, t: str) -> str:
    return call.one("Abs", [call.one("Sub", [x, t])])


def _squared(call: OnnxCall, x: str, t: str) -> str:
    d = call.one("Sub", [x, t])
    return call.one("Mul", [d, d])


def _smooth_l1(call: OnnxCall, x: str, t: str) -> str:
    """0.5·d²/beta where d < beta, else d - 0.5·beta (huber: 0.5·d², delta·(d - 0.5·delta))."""
    d, dtype = _difference(call, x, t), call.dtype
    huber = "delta" in call.attrs
    bound = call.attrs["delta" if huber else "beta"]
    square = call.one(
        "Mul", [call.one("Mul", [d, d]), _const(call, 0.5 if huber else 0.5 / bound, dtype)]
    )
    linear = call.one("Sub", [d, _const(call, 0.5 * bound, dtype)])
    if huber:
        linear = call.one("Mul", [linear, _const(call, bound, dtype)])
    return call.one("Where", [call.one("Less", [d, _const(call, bound, dtype)]), square, linear])


def _bce_with_logits(call: OnnxCall, x: str, t: str) -> str:
    """(1 - t)·x + scale·(log(1 + exp(-|x|)) + max(-x, 0)), scale = 1 + (pos_weight - 1)·t."""
    dtype = call.dtype
    one, zero = _const(call, 1, dtype), _const(call, 0, dtype)
    negative = call.one("Neg", [x])
    tail = call.one(
        "Log", [call.one("Add", [one, call.one("Exp", [call.one("Neg", [call.one("Abs", [x])])])])]
    )
    softplus = call.one("Add", [tail, call.one("Max", [negative, zero])])
    weight = call.inputs.get("pos_weight")
    if weight is not None:
        scale = call.one("Add", [one, call.one("Mul", [call.one("Sub", [weight, one]), t])])
        softplus = call.one("Mul", [scale, softplus])
    return call.one("Add", [call.one("Mul", [call.one("Sub", [one, t]), x]), softplus])


def _kl_div(call: OnnxCall, x: str, t: str) -> str:
    """t·(log t - x), 0·log 0 = 0; exp(t)·(t - x) with log_target."""
    if call.attrs["log_target"]:
        return call.one("Mul", [call.one("Exp", [t]), call.one("Sub", [t, x])])
    dtype = call.dtype
    positive = call.one("Greater", [t, _const(call, 0, dtype)])
    safe = call.one("Where", [positive, t, _const(call, 1, dtype)])
    entropy = call.one(
        "Where", [positive, call.one("Mul", [t, call.one("Log", [safe])]), _const(call, 0, dtype)]
    )
    return call.one("Sub", [entropy, call.one("Mul", [t, x])])


def _fraction(call: OnnxCall, hits: str) -> list[str]:
    """The mean of a bool tensor, in the result's dtype."""
    return [
        call.one("ReduceMean", [call.one("Cast", [hits], to=ONNX_TYPES[call.dtype])], keepdims=0)
    ]


def _accuracy(call: OnnxCall) -> list[str]:
    best = call.one("ArgMax", [call.inputs["input"]], axis=1, keepdims=0)
    return _fraction(call, call.one("Equal", [best, call.inputs["target"]]))


def _top_k_accuracy(call: OnnxCall) -> list[str]:
    x = call.inputs["input"]
    own = call.one("Unsqueeze", [_picked(call, x, call.inputs["target"]), call.b.ints([1], "axes")])
    higher = call.one("Cast", [call.one("Greater", [x, own])], to=TensorProto.INT64)
    count = call.one("ReduceSum", [higher, call.b.ints([1], "axes")], keepdims=0)
    k = call.b.constant(np.int64(call.attrs["k"]), "k")
    return _fraction(call, call.one("Less", [count, k]))


# ---------------------------------------------------------------- the table
#
# Each row says the oldest opset it works with: 13 (Softmax's axis, Split/Squeeze/Unsqueeze/
# ReduceSum with input axes); 14 where an explicit Reshape may hold a zero size (allowzero);
# LayerNormalization 17.

ROWS = Rows("onnx")
for _name, _op_type in _UNARY.items():
    ROWS.add(_name, OnnxRow(_node(_op_type, "x"), min_opset=13))
for _name, _op_type in _BINARY.items():
    ROWS.add(_name, OnnxRow(_node(_op_type, "a", "b"), min_opset=13))
for _name, _row in (
    ("rsqrt", _rsqrt),
    ("silu", _silu),
    ("gelu", _gelu),
    ("leaky_relu", _leaky_relu),
    ("elu", _elu),
    ("softplus", _softplus),
    ("relu6", _relu6),
    ("hardsigmoid", _hardsigmoid),
    ("hardswish", _hardswish),
    ("mish", _mish),
    ("erf", _erf),
    ("pow", _node("Pow", "x", "p")),
    ("ne", _ne),
    ("where", _where),
    ("clamp", _clamp),
    ("cast", _cast),
    ("mean", _reduction("ReduceMean")),
    ("sum", _reduction("ReduceSum")),
    ("max", _reduction("ReduceMax")),
    ("min", _reduction("ReduceMin")),
    ("argmax", _arg("ArgMax")),
    ("argmin", _arg("ArgMin")),
    ("floordiv", _floordiv),
    ("mod", _mod),
    ("cumsum", _cumsum),
    ("softmax", _softmax("Softmax")),
    ("log_softmax", _softmax("LogSoftmax")),
    ("permute", _permute),
    ("transpose", _transpose),
    ("concat", _concat),
    ("stack", _stack),
    ("split", _split),
    ("chunk", _split),
    ("roll", _roll),
    ("unsqueeze", _unsqueeze),
    ("squeeze", _squeeze),
    ("pad", _pad),
    ("upsample", _upsample),
    ("getitem", _getitem),
    ("arange", _arange_row),
    ("expand", _expand),
    ("broadcast_to", _expand),
    ("take", _take),
    ("gather", _gather),
    ("tensor", _tensor_literal),
    *((name, _filled(v)) for name, v in (("zeros", 0), ("ones", 1), ("full", None))),
    *((f"{name}_like", _filled(v)) for name, v in (("zeros", 0), ("ones", 1), ("full", None))),
    ("max_pool1d", _max_pool),
    ("max_pool2d", _max_pool),
    ("avg_pool1d", _avg_pool),
    ("avg_pool2d", _avg_pool),
    ("max_pool3d", _max_pool),
    ("avg_pool3d", _avg_pool),
    ("global_avg_pool", _global_avg_pool),
    ("adaptive_avg_pool2d", _adaptive_avg_pool),
    ("adaptive_avg_pool3d", _adaptive_avg_pool),
    ("scaled_dot_product_attention", _sdpa),
    *((f"Conv{n}d", _conv) for n in (1, 2, 3)),
    *((f"ConvTranspose{n}d", _conv_transpose) for n in (1, 2, 3)),
    ("Linear", _linear),
    ("Embedding", _embedding),
    ("Dropout", lambda call: _identity(call, call.inputs["x"])),  # inference mode
    ("StochasticDepth", lambda call: _identity(call, call.inputs["x"])),
    ("Identity", lambda call: _identity(call, call.inputs["x"])),
    ("BatchNorm", _batchnorm),
    ("RMSNorm", _rmsnorm),
    ("Parameter", lambda call: [call.params[call.attrs.get("tensor", "")]]),  # its initializer
    ("Buffer", lambda call: [call.params[call.attrs.get("tensor", "")]]),
):
    ROWS.add(_name, OnnxRow(_row, min_opset=13))
for _name, _row in (
    ("flatten", _flatten),
    ("reshape", _reshape_row),
    ("GroupNorm", _groupnorm),
    ("LSTM", _rnn("LSTM")),
    ("GRU", _rnn("GRU")),
    ("MultiHeadAttention", _mha),
):
    ROWS.add(_name, OnnxRow(_row, min_opset=14))
for _name, _row in (
    ("cross_entropy", _cross_entropy),
    ("nll", lambda call: _class_loss(call, call.inputs["input"])),
    ("mse", _pointwise_loss(_squared)),
    ("l1", _pointwise_loss(_difference)),
    ("smooth_l1", _pointwise_loss(_smooth_l1)),
    ("huber", _pointwise_loss(_smooth_l1)),
    ("binary_cross_entropy_with_logits", _pointwise_loss(_bce_with_logits)),
    ("kl_div", _pointwise_loss(_kl_div)),
    ("accuracy", _accuracy),
    ("top_k_accuracy", _top_k_accuracy),
):
    ROWS.add(_name, OnnxRow(_row, min_opset=13))
ROWS.add("LayerNorm", OnnxRow(_layernorm, min_opset=17))
ROWS.add("LayerNorm2d", OnnxRow(_layernorm2d, min_opset=17))


def lower(op: str, call: OnnxCall) -> list[str]:
    """The values holding node `op`'s results (one per IR output), its nodes added to
    `call.b`. Raises OpsetTooOld below the row's `min_opset`."""
    row = lowering_row(op, "onnx")
    if call.b.opset < row.min_opset:
        raise OpsetTooOld(op, row.min_opset)
    return row.lower(call)


ROWS.register()  # OpDef.lowerings["onnx"]: one row per op
