"""The Keras lowering table: one row per registry op, each turning one IR node into readable,
idiomatic Keras 3 source (`import keras`, `from keras import ops`). This module only produces
strings: it never imports Keras or TensorFlow.

The rows (`ROWS`, registered on the ops: `rows.lowering_row(op, "keras")`) start from the
ones every Python-source backend shares (`python_rows.shared_rows`, spelt by the `KERAS`
dialect) and override the rows that differ. A function's row lowers a node to one Python
expression; a layer's row is its `KerasLayerRule`: the constructor expression for `__init__`
(the Keras class and arguments of the rule's `layer`, shared with the weight conversions) and
the call expression for `call`, with the rest of the layer's Keras knowledge (weights both
ways, state walking, training). Every row computes exactly the op's NumPy reference
(LANGUAGE.md, CONVENTIONS.md); where a plain Keras call differs, the row fixes it inline or
calls a runtime helper (`HELPERS`, see `helpers_needed`). What every backend writes alike
(number literals, bracketing, defaults left out, argument lists, Python indexing) comes from
`backends.source_helpers`.

Layout: the ops of `layout.SPATIAL_OPS` receive and return channels-last tensors ([B, *spatial, C];
a rank-2 [B, C] is the same in both layouts), while their `attrs`, `in_types` and `out_types`
stay in dualnet's channels-first order. Every other op gets its tensors as `in_types` describe
them.

The differences handled, op by op:

- `padding="same"` is TensorFlow's rule, so Keras's own "same" is used where it pads exactly as
  the node for every input size (`weights.keras_same`); other pads become an explicit `ops.pad`
  before a "valid" layer or pooling (`-inf` for max pooling). ConvTranspose crops its output
  by PyTorch's padding; an output_padding not below the stride (Keras refuses it) comes from
  zero rows appended to its input (`backends.conv_transpose`).
- TensorFlow's shape inference loses sizes the IR knows after a slice of a symbolic axis, a
  dilated convolution or run-time padding over one; `_shaped` gives them back, as the layers
  after them build from them.
- TensorFlow's oneDNN convolution of one input channel with a stride on the last axis and an
  output width of 1 computes wrong numbers: such convolutions (`onednn_conv_bug`) get one
  more output column, dropped again. Its 3-D convolution with padding="same" misreads where
  a window is below its stride (`weights.same_misread`), and its gradient crashes with a
  stride > 1 where the kernel is longer than the input (`weights.same_crashes`): such inputs
  are padded explicitly
  (`_pad_same` where the pads depend on a symbolic size; `_PadSame` as a Sequential step).
  Its constant folding turns a Dense's bias add followed by the addition of a constant column
  into a BiasAdd of the column, which fails: the column is broadcast first
  (`_broadcast_last_axis`).
- Keras's average pooling never counts padding: count_include_pad=true pads explicitly first
  (`_pad_same` where the pads depend on a symbolic size); count_include_pad=false with pads
  Keras's "same" cannot express divides by a pooled mask (`_avg_pool`). ceil_mode is the
  rule's extra pads at the end (a count_include_pad=true average pads (p, p), then
  `_avg_pool` over the extra ones). 3-d pooling is 2-d pooling over (H, W), then D
  (`_max_pool3d`, `_average_pool3d`): TensorFlow's 3-d pooling takes no float64.
- Defaults that differ: `ops.gelu` is the tanh approximation unless approximate=False (and
  off by up to 5e-9 in float64: `_gelu` writes PyTorch's formula there),
  `ops.leaky_relu`'s slope is 0.2; softplus has no beta or threshold (`_softplus`); argmax and
  argmin return int32 (cast to int64); BatchNormalization's momentum is 1 - m.
- `upsample`: nearest is `ops.repeat` (exact for every scale); bilinear is `ops.image.resize`,
  half-pixel like PyTorch's align_corners=False (TensorFlow computes it in float32, also for
  f64 inputs), and `_upsample_bilinear` (the same interpolation written out) where a size is
  symbolic: ops.image.resize refuses sizes unknown when the model is traced.
- `adaptive_avg_pool2d/3d`: per axis the identity (its own size, possibly symbolic), a mean (size
  1), or `_adaptive_pool`, the means over PyTorch's windows (Keras's adaptive pooling needs
  every size known when traced and fails with an output size 1 on the other axis).
- softmax and log_softmax beyond rank 5 (TensorFlow's kernel limit) are `_softmax`: computed
  on a matrix (the axis moved last, the others merged), then reshaped back; attention's
  softmax goes through it too.
- Attention masks are bool with true = may attend, as in Keras; a query that may attend no key
  gets zero weights in dualnet: `_attention` (scaled_dot_product_attention) and `_mha`
  (MultiHeadAttention: out_proj's bias, where Keras averages all keys).
- LSTM/GRU are `_Recurrent` layers: Keras layers stacked as PyTorch stacks them, returning
  PyTorch's states [layers·directions, B, hidden] with `state=True`.
- Training: BatchNorm and Dropout, the layers that compute differently in training (their
  rules' `training`), are called with the generated `call`'s `training` argument
  (`TRAINING`), which `fit()`, `train_on_batch` and `evaluate` set.
- Initialisation (LANGUAGE.md §7): Keras's defaults (Glorot kernels, zero biases, U(±0.05)
  embeddings, orthogonal recurrent kernels) are not PyTorch's, so every layer with parameters
  gets PyTorch's initialisers with PyTorch's fans (`_initializers`, the runtime's `_TorchInit`
  and `_TorchKernelInit`):
  a Linear or convolution U(±1/√fan_in) for weight and bias, or its `init=`; Embedding
  N(0, 1); MultiHeadAttention `_MultiHeadAttention`; LSTM/GRU inside `_Recurrent`. Norms keep
  Keras's ones and zeros, which are PyTorch's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from math import prod

from dualnet.backends.common.conv_transpose import TransposedPadding, transposed_padding
from dualnet.backends.common.python_rows import BINARY_SYMBOLS, UNARY, Dialect, shared_rows
from dualnet.backends.common.source_helpers import (
    NodeCall,
    atom,
    axes_arg,
    default_kw,
    default_literal_dtype,
    getitem,
    helpers_used,
    is_default,
    is_number,
    kwargs,
    last_axis,
    left_operand,
    literal,
    need,
    operands,
    pad_value,
    reads_self,
    reshape_sizes,
    result_dtype,
    sizes,
)
from dualnet.backends.keras.leaves import (
    Leaf,
    attention_leaf,
    conv_leaf,
    dense_leaf,
    embedding_leaf,
    free_leaf,
    normalized_leaf,
    per_channel_leaf,
    rnn_leaf,
)
from dualnet.backends.keras.weights import (
    CONVS,
    MHA_WEIGHTS,
    TRANSPOSED,
    KerasLayer,
    complement,
    conv_layer,
    conv_weights,
    dilates_kernel,
    in_order,
    is_depthwise,
    keras_layer,
    keras_same,
    linear_from,
    linear_to,
    rnn_layer,
    rnn_weights,
    same_spans,
    spreads_input,
    strides_for_same,
)
from dualnet.backends.rows import LayerRow, Rows
from dualnet.backends.runtime_source import RUNTIME, helper_sources
from dualnet.ir.dims import Dim
from dualnet.ir.tagged import Tagged, Written, written
from dualnet.ir.types import DType
from dualnet.ops.common import Initializer
from dualnet.ops.free import FREE_TENSORS

TRAINING = "training"  # the generated `call`'s argument: True in fit() and train_on_batch

KERAS_DTYPES = {d: d.framework for d in DType}


@dataclass
class KerasCall(NodeCall):
    """One node as the Keras lowering sees it (fields: see `NodeCall`). `in_types` and
    `out_types` are in dualnet's (channels-first) order, also for `layout.SPATIAL_OPS`."""


# ---------------------------------------------------------------- source helpers


def _dtype(dtype: DType) -> str:
    return f'"{KERAS_DTYPES[dtype]}"'


def _tensor(call: KerasCall, name: str) -> str:
    """Input `name` as a tensor: a number (a literal, a hyperparameter, a constant, a size)
    becomes ops.convert_to_tensor(number, ...)."""
    src = call.inputs[name]
    if not is_number(call, name):
        return src
    t = call.in_types.get(name)
    return f"ops.convert_to_tensor({src}{'' if t is None else ', dtype=' + _dtype(t.dtype)})"


def _shape(dims, fmt) -> str:
    """A shape for ops.reshape (`reshape_sizes`)."""
    texts = reshape_sizes(dims, fmt)
    return f"({', '.join(texts)}{',' if len(texts) == 1 else ''})"


def _shaped(call: KerasCall, src: str, shape) -> str:
    """`src`, a value of `shape`, with its known sizes given back to TensorFlow's shape
    inference where an op loses them (the runtime's `_shaped`)."""
    sizes = ", ".join(call.fmt(d) if isinstance(d, int) else "None" for d in shape)
    return f"_shaped({src}, {sizes})"


def _shaped_spatial(call: KerasCall, src: str) -> str:
    """`_shaped` for the channels-last result of a spatial op."""
    shape = call.out_types[0].shape
    return _shaped(call, src, (shape[0], *shape[2:], shape[1]))


def _loses_spatial_sizes(call: KerasCall) -> bool:
    """`loses_spatial_sizes` of a call."""
    return bool(call.in_types) and loses_spatial_sizes(
        call.in_types["x"].shape, call.out_types[0].shape
    )


def loses_spatial_sizes(in_shape: tuple, out_shape: tuple) -> bool:
    """Whether a window op whose output sizes TensorFlow's shape inference loses where an
    input size is symbolic (the caller knows it does), from channels-first `in_shape` to
    `out_shape`, has such an input and a known output size."""
    return any(not isinstance(d, int) for d in in_shape[2:]) and any(
        isinstance(d, int) for d in out_shape[2:]
    )


def dilation_loses_sizes(attrs: dict, in_shape: tuple, out_shape: tuple) -> bool:
    """Whether TensorFlow's dilated convolution (stride 1; else the kernel is dilated) over
    a symbolic size loses known output sizes (it loses every spatial size)."""
    return (
        max(attrs["dilation"]) > 1
        and max(attrs["stride"]) == 1
        and loses_spatial_sizes(in_shape, out_shape)
    )


def _widths(pads, fmt) -> str:
    """ops.pad's widths for a channels-last tensor from (before, after) per spatial axis."""
    return fmt(((0, 0), *pads, (0, 0)))


# ---------------------------------------------------------------- element-wise

KERAS = Dialect(
    tensor=_tensor,
    dtype=_dtype,
    functions={
        **{name: f"ops.{name}" for name in UNARY},
        **{name: f"ops.{name}" for name in ("leaky_relu", "elu", "where", "cast")},
        **{name: f"ops.{name}" for name in ("stop_gradient", "softmax", "log_softmax", "split")},
        "hardsigmoid": "ops.hard_sigmoid",
        "hardswish": "ops.hard_silu",
        "mish": "keras.activations.mish",  # x·tanh(softplus(x)); keras.ops has no mish
        "transpose": "ops.swapaxes",
        "permute": "ops.transpose",
        "concat": "ops.concatenate",
        **{name: f"ops.{name}" for name in ("stack", "roll")},
        "unsqueeze": "ops.expand_dims",
    },
    axis="axis",
    leaky_slope=0.2,
)
ROWS = Rows("keras", shared_rows(KERAS))  # the rows below override or add to these


@ROWS.function("gelu")
def _gelu(call: KerasCall) -> str:
    mode = call.attrs["approximate"]
    tanh = f'{atom(call.fmt(mode))} == "tanh"' if isinstance(mode, Written) else str(mode == "tanh")
    return f"_gelu({_tensor(call, 'x')}, {tanh})"


@ROWS.function("softplus")
def _softplus(call: KerasCall) -> str:
    beta, threshold = call.attrs["beta"], call.attrs["threshold"]
    x = _tensor(call, "x")
    if is_default(beta, 1.0) and is_default(threshold, 20.0):  # above 20: off by < e^-20
        return f"ops.softplus({x})"
    return f"_softplus({x}, {call.fmt(beta)}, {call.fmt(threshold)})"


_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_BINARY_CALLS = {"eq": "ops.equal", "ne": "ops.not_equal", "matmul": "ops.matmul"}


def _binary(op: str) -> Callable[[KerasCall], str]:
    def lower(call: KerasCall) -> str:
        a, b = operands(call, op, _tensor)
        if op in _BINARY_CALLS:  # KerasTensor has no elementwise ==; `@` needs rank ≥ 2 in TF
            return f"{_BINARY_CALLS[op]}({a}, {b})"
        symbol = BINARY_SYMBOLS[op]
        if _broadcasts_apart(call):
            return f"ops.{_KERAS_NAMES[symbol]}(*_broadcast_apart({a}, {b}))"
        if symbol in _MIRRORED and literal(a) is not None and literal(b) is None:
            return f"{atom(b)} {_MIRRORED[symbol]} {atom(a)}"  # `x > 1.0`, not `1.0 < x`
        if op == "add":
            a, b = _broadcast_last_axis(call, a, b)
            if reads_self(a) and not is_number(call, "a"):
                # a Keras variable's `+` is ops.add, which TensorFlow's backend may misread
                # as a bias add along axis 1 ([3, 4, 4, 1] + [4, 1])
                a = f"{a}.value"
        return f"{left_operand(a, symbol)} {symbol} {atom(b)}"

    return lower


for _op in BINARY_SYMBOLS:
    ROWS.function(_op)(_binary(_op))

_KERAS_NAMES = {
    "+": "add",
    "-": "subtract",
    "*": "multiply",
    "/": "divide",
    "//": "floor_divide",
    "%": "mod",
    "**": "power",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
}


def _broadcasts_apart(call: KerasCall) -> bool:
    """Whether two tensors of different shapes meet in a result of rank > 5: TensorFlow's
    elementwise kernels (and BroadcastTo) refuse a broadcast that leaves more than five
    axes apart ("Broadcast between [2,1,5,1,4,1] and [2,1,5,1,4] is not supported yet";
    fuzzer seed 10601), so the runtime's `_broadcast_apart` tiles both first."""
    out = call.out_types[0].shape if call.out_types else ()
    types = [call.in_types.get(name) for name in ("a", "b")]
    return (
        len(out) > 5
        and None not in types
        and not any(is_number(call, name) for name in ("a", "b"))
        and types[0].shape != types[1].shape
    )


def _broadcast_last_axis(call: KerasCall, a: str, b: str) -> tuple[str, str]:
    """The operands of `a + b`, one broadcast along the last axis explicitly where the other
    has the result's shape: TensorFlow's constant folding (2.21) rewrites a Dense's bias add
    followed by the addition of a constant [..., 1] tensor (`arange(B)[:, None]`) into a
    BiasAdd of that tensor, which fails in every tf.function, fit() included
    (tests/backends/test_upstream_bugs.py). Only where the other operand is a name (a
    layer's result, as the emitter writes it), so nothing is computed twice."""
    types = [call.in_types.get(name) for name in ("a", "b")]
    out = call.out_types[0].shape if call.out_types else ()
    if None in types or not out or out[-1] == 1:
        return a, b
    (ta, tb), sources = types, [a, b]
    for full, part in ((0, 1), (1, 0)):
        if (
            sources[full].isidentifier()
            and (ta, tb)[full].shape == out
            and (ta, tb)[part].shape[-1:] == (1,)
        ):
            sources[part] = f"ops.broadcast_to({sources[part]}, ops.shape({sources[full]}))"
            return sources[0], sources[1]
    return a, b


@ROWS.function("clamp")
def _clamp(call: KerasCall) -> str:
    lo, hi = call.attrs["lo"], call.attrs["hi"]
    x = _tensor(call, "x")
    if result_dtype(call).is_int:  # clip then truncate == clip to truncated bounds
        lo, hi = (None if v is None else int(v) for v in (lo, hi))
    if lo is None and hi is None:
        return x
    if hi is None:
        return f"ops.maximum({x}, {call.fmt(lo)})"
    if lo is None:
        return f"ops.minimum({x}, {call.fmt(hi)})"
    return f"ops.clip({x}, {call.fmt(lo)}, {call.fmt(hi)})"


# ---------------------------------------------------------------- reductions


def _reduce(fn: str) -> Callable[[KerasCall], str]:
    def lower(call: KerasCall) -> str:
        axis = axes_arg(call.attrs["axis"], call.fmt)
        keep = ", keepdims=True" if call.attrs["keepdims"] else ""
        return f"ops.{fn}({_tensor(call, 'x')}, axis={axis}{keep})"

    return lower


def _index_reduce(fn: str) -> Callable[[KerasCall], str]:
    reduce = _reduce(fn)

    def lower(call: KerasCall) -> str:  # Keras's indices are int32
        return f"ops.cast({reduce(call)}, {_dtype(DType.i64)})"

    return lower


_TF_MAX_RANK = 5  # TensorFlow's softmax kernel takes rank <= 5


def _softmax(op: str) -> Callable[[KerasCall], str]:
    shared = ROWS[op].lower  # ops.softmax / ops.log_softmax: the ranks TensorFlow takes

    def lower(call: KerasCall) -> str:
        if call.out_types and call.out_types[0].rank > _TF_MAX_RANK:
            x, axis = _tensor(call, "x"), call.fmt(last_axis(call))
            return f"_softmax({x}, {axis}{', log=True' if op == 'log_softmax' else ''})"
        return shared(call)

    return lower


@ROWS.function("cumsum")
def _cumsum(call: KerasCall) -> str:
    return f"ops.cumsum({_tensor(call, 'x')}, axis={call.fmt(call.attrs['axis'])})"


for _op in ("mean", "sum", "max", "min"):
    ROWS.function(_op)(_reduce(_op))
for _op in ("argmax", "argmin"):
    ROWS.function(_op)(_index_reduce(_op))
for _op in ("softmax", "log_softmax"):
    ROWS.function(_op)(_softmax(_op))


# ---------------------------------------------------------------- shape ops


@ROWS.function("flatten", "reshape")
def _reshape_to_result(call: KerasCall) -> str:
    """flatten and reshape: ops.reshape to the result's shape."""
    return f"ops.reshape({_tensor(call, 'x')}, {_shape(call.out_types[0].shape, call.fmt)})"


@ROWS.function("squeeze")
def _squeeze(call: KerasCall) -> str:
    """Indexing, not ops.squeeze: Keras refuses to squeeze an axis whose size it does not
    know statically (a slice `-1:` of a symbolic size), though the checker proved it is 1."""
    return f"{_tensor(call, 'x')}[{', '.join([':'] * call.attrs['axis'] + ['0'])}]"


@ROWS.function("pad")
def _pad(call: KerasCall) -> str:
    pairs = tuple(call.attrs["pads"])
    x = _tensor(call, "x")
    if not any(before or after for before, after in pairs):
        return x
    value = call.attrs["value"]
    extra = "" if value == 0 else f", constant_values={pad_value(call, value)}"
    return f"ops.pad({x}, {call.fmt(pairs)}{extra})"


@ROWS.function("upsample")
def _upsample(call: KerasCall) -> str:
    x = _tensor(call, "x")
    if call.attrs["mode"] == "bilinear":
        size = tuple(call.out_types[0].shape[2:])
        if not all(isinstance(d, int) for d in size):  # traced with unknown sizes
            return f"_upsample_bilinear({x}, {call.fmt(tuple(call.attrs['scale']))})"
        return f'ops.image.resize({x}, {call.fmt(size)}, interpolation="bilinear")'
    for axis, s in enumerate(call.attrs["scale"], 1):
        if not is_default(s, 1):
            x = f"ops.repeat({x}, {call.fmt(s)}, axis={axis})"
    return x


@ROWS.function("getitem")
def _getitem(call: KerasCall) -> str:
    items = call.attrs["items"]
    new = _new_axes(items)
    if not new:
        src = getitem(call, _tensor)  # Python indexing: the same source as PyTorch's
    else:  # TensorFlow's graph optimiser drops a new axis of a slice of a stack
        # (test_upstream_bugs): the axes come after the indexing
        kept = [item for item in items if item[0] != "new"]
        src = getitem(replace(call, attrs={**call.attrs, "items": kept}), _tensor)
        axes = str(new[0]) if len(new) == 1 else f"({', '.join(map(str, new))})"
        src = f"ops.expand_dims({src}, {axes})"
    return _shaped(call, src, call.out_types[0].shape) if _slices_to_known(call) else src


def _new_axes(items) -> list[int]:
    """The axes of x[...]'s result that its `None`s add."""
    out, axis = [], 0
    for item in items:
        if item[0] == "new":
            out.append(axis)
        if item[0] != "index":
            axis += 1
    return out


def _slices_to_known(call: KerasCall) -> bool:
    """Whether x[...] gives known sizes TensorFlow's shape inference does not know: an
    axis of symbolic size sliced to a known size (`x[:, -2:]`, `x[:, :2]` of [B, T]), or any
    index or bound computed at run time."""
    x = call.in_types.get("x")
    if x is None or not call.out_types:
        return False
    items = call.attrs["items"]
    taken = [item for item in items if item[0] != "new"]  # one per axis of x
    known = any(isinstance(d, int) for d in call.out_types[0].shape)
    if known and any(
        _read_at_run_time(item, size) for item, size in zip(taken, x.shape, strict=False)
    ):
        return True  # an index or bound read at run time: TensorFlow loses every size
    kept, sizes = iter(call.out_types[0].shape), iter(x.shape)
    for item in items:
        if item[0] == "new":
            next(kept)
            continue
        size = next(sizes)
        if item[0] != "index" and isinstance(next(kept), int) and not isinstance(size, int):
            return True
    return False


def _read_at_run_time(item: tuple, size) -> bool:
    """Whether an index or slice of x[...] has a symbolic bound (the whole axis aside)."""
    if item[0] == "index":
        return isinstance(item[1], Dim)
    _, start, stop, step = item
    return (
        isinstance(start, Dim) or isinstance(step, Dim) or (isinstance(stop, Dim) and stop != size)
    )


@ROWS.function("arange")
def _arange(call: KerasCall) -> str:
    return f"ops.arange({call.fmt(call.attrs['n'])}, dtype={_dtype(DType.i64)})"


@ROWS.function("expand", "broadcast_to")
def _broadcast_to(call: KerasCall) -> str:
    return f"ops.broadcast_to({_tensor(call, 'x')}, {call.fmt(tuple(call.attrs['shape']))})"


@ROWS.function("chunk")
def _chunk(call: KerasCall) -> str:
    """ops.split into `chunks` equal parts, or at the parts' ends where the last is smaller
    (or there are fewer)."""
    sizes, chunks = call.attrs["sizes"], call.attrs["chunks"]
    x = _tensor(call, "x")
    if len(sizes) == 1:
        return x
    if len(sizes) == chunks and len(set(sizes)) == 1:
        parts = call.fmt(chunks)
    else:
        ends = (call.fmt(sum(sizes[: i + 1])) for i in range(len(sizes) - 1))
        parts = f"[{', '.join(ends)}]"
    return f"ops.split({x}, {parts}, axis={call.fmt(call.attrs['axis'])})"


@ROWS.function("take")
def _take(call: KerasCall) -> str:
    x, index = _tensor(call, "x"), call.inputs["index"]
    return f"ops.take({x}, {index}, axis={call.fmt(call.attrs['axis'])})"


@ROWS.function("gather")
def _gather(call: KerasCall) -> str:
    x, index = _tensor(call, "x"), call.inputs["index"]
    return f"ops.take_along_axis({x}, {index}, axis={call.fmt(call.attrs['axis'])})"


def _filled(op: str) -> Callable[[KerasCall], str]:
    """zeros, ones, full: a shape, full's value and the dtype."""

    def lower(call: KerasCall) -> str:
        value = f", {call.fmt(call.attrs['value'])}" if op == "full" else ""
        shape = call.fmt(tuple(call.attrs["shape"]))
        return f"ops.{op}({shape}{value}, dtype={_dtype(call.attrs['dtype'])})"

    return lower


def _filled_like(op: str) -> Callable[[KerasCall], str]:
    """zeros_like, ones_like, full_like: the dtype written where it is not x's (or x's type
    is unknown)."""

    def lower(call: KerasCall) -> str:
        x_type, dtype = call.in_types.get("x"), call.attrs["dtype"]
        value = f", {call.fmt(call.attrs['value'])}" if op == "full" else ""
        same = x_type is not None and x_type.dtype == dtype
        extra = kwargs(("dtype", None if same else _dtype(dtype)))
        return f"ops.{op}_like({_tensor(call, 'x')}{value}{extra})"

    return lower


@ROWS.function("tensor")
def _tensor_literal(call: KerasCall) -> str:
    """ops.convert_to_tensor of the nested numbers; floats in Keras's floatx (f32) where
    PyTorch would take its default dtype (convert_to_tensor alone gives float32)."""
    attrs = call.attrs
    dtype = "keras.config.floatx()" if default_literal_dtype(attrs) else _dtype(attrs["dtype"])
    return f"ops.convert_to_tensor({call.fmt(attrs['data'])}{kwargs(('dtype', dtype))})"


for _op in ("zeros", "ones", "full"):
    ROWS.function(_op)(_filled(_op))
    ROWS.function(f"{_op}_like")(_filled_like(_op))


# ---------------------------------------------------------------- pooling (channels-last)


def _pool_args(call: KerasCall, padding: str | None = None) -> str:
    kernel, stride = call.attrs["kernel"], call.attrs["stride"]
    fmt = call.fmt
    return sizes(kernel, fmt) + kwargs(
        ("strides", None if stride == kernel else sizes(stride, fmt)), ("padding", padding)
    )


def _has_pads(attrs: dict) -> bool:
    return any(p is None or any(p) for p in attrs["pads"])


def _pads_at_run_time(attrs: dict) -> bool:
    """Whether TensorFlow's "same" pads depend on a symbolic input size."""
    return any(p is None for p in attrs["pads"])


def _pad_same(x: str, attrs: dict, fmt) -> str:
    """`x` padded with zeros by TensorFlow's "same" rule at run time."""
    return f"_pad_same({x}, {fmt(same_spans(attrs))}, {fmt(attrs['stride'])})"


def _pooling(call: KerasCall, average: bool) -> str:
    """The pooling function: Keras's, or for 3-d windows `_max_pool3d` / `_average_pool3d`
    (2-d poolings: TensorFlow's 3-d ones take no float64 and misread some "same" windows)."""
    if len(call.attrs["kernel"]) == 3:
        return "_average_pool3d" if average else "_max_pool3d"
    return "ops.average_pool" if average else "ops.max_pool"


def _pool_same(attrs: dict) -> bool:
    """Whether Keras's padding="same" pads as `attrs` say (3-d: by 2-d pooling, which
    TensorFlow's misreading of 3-d windows never reaches)."""
    return keras_same(attrs) or (len(attrs["kernel"]) == 3 and attrs["padding"] == "same")


@ROWS.function("max_pool1d", "max_pool2d", "max_pool3d")
def _max_pool(call: KerasCall) -> str:
    x, pool = _tensor(call, "x"), _pooling(call, average=False)
    if _pool_same(call.attrs):  # Keras ignores the padded elements: -inf padding
        return f"{pool}({x}, {_pool_args(call, call.fmt('same'))})"
    if _has_pads(call.attrs):
        x = f'ops.pad({x}, {_widths(call.attrs["pads"], call.fmt)}, constant_values=float("-inf"))'
    return f"{pool}({x}, {_pool_args(call)})"


@ROWS.function("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(call: KerasCall) -> str:
    attrs, fmt = call.attrs, call.fmt
    x, pool = _tensor(call, "x"), _pooling(call, average=True)
    if not _has_pads(attrs):
        return f"{pool}({x}, {_pool_args(call)})"
    extra = tuple((0, after - p) for p, after in attrs["pads"]) if attrs["ceil_mode"] else ()
    if attrs["count_include_pad"] and any(e for _, e in extra):
        # ceil_mode: the padding (p, p) counts, the last window's extra padding after it not
        x = f"ops.pad({x}, {_widths(tuple((p, p) for p, _ in attrs['pads']), fmt)})"
        return f"_avg_pool({x}, {fmt(attrs['kernel'])}, {fmt(attrs['stride'])}, {fmt(extra)})"
    if not attrs["count_include_pad"]:
        if _pool_same(attrs):  # Keras never counts padding
            return f"{pool}({x}, {_pool_args(call, call.fmt('same'))})"
        return (
            f"_avg_pool({x}, {fmt(attrs['kernel'])}, {fmt(attrs['stride'])}, "
            f"{fmt(tuple(attrs['pads']))})"
        )
    if _pads_at_run_time(attrs):  # TensorFlow loses sizes padded at run time
        x = _pad_same(x, attrs, fmt)
        y = f"{pool}({x}, {_pool_args(call)})"
        return _shaped_spatial(call, y) if _loses_spatial_sizes(call) else y
    x = f"ops.pad({x}, {_widths(attrs['pads'], fmt)})"
    return f"{pool}({x}, {_pool_args(call)})"


@ROWS.function("global_avg_pool")
def _global_avg_pool(call: KerasCall) -> str:
    axes = tuple(a - 1 for a in call.attrs["axes"])  # channels-last spatial axes
    return f"ops.mean({_tensor(call, 'x')}, axis={axes_arg(axes, call.fmt)})"


def _adaptive_kind(size, bins) -> str:
    """How adaptive pooling treats one axis: "mean" to 1, "keep" (the input's own size,
    possibly symbolic: bins None), or "pool"."""
    if size == 1:
        return "mean"
    if bins is None or bins == tuple((i, i + 1) for i in range(size)):
        return "keep"
    return "pool"


@ROWS.function("adaptive_avg_pool2d", "adaptive_avg_pool3d")
def _adaptive_avg_pool(call: KerasCall) -> str:
    """Per channels-last spatial axis: kept, a mean to size 1, or `_adaptive_pool` over
    PyTorch's windows (ops.adaptive_average_pool wants every size known when traced, and
    fails where one output size is 1)."""
    size, fmt = tuple(call.attrs["size"]), call.fmt
    kinds = [_adaptive_kind(o, b) for o, b in zip(size, call.attrs["bins"], strict=True)]
    x = _tensor(call, "x")
    means = tuple(axis for axis, kind in enumerate(kinds, 1) if kind == "mean")
    if means:
        x = f"ops.mean({x}, axis={axes_arg(means, fmt)}, keepdims=True)"
    for axis, (kind, o, bins) in enumerate(zip(kinds, size, call.attrs["bins"], strict=True), 1):
        if kind == "pool":  # the input's size: its type's (maybe a hyperparameter), or the bins'
            n = call.in_types["x"].shape[axis + 1] if call.in_types else bins[-1][1]
            x = f"_adaptive_pool({x}, {axis}, {fmt(n)}, {fmt(o)})"
    return x


# ---------------------------------------------------------------- attention


@ROWS.function("scaled_dot_product_attention")
def _sdpa(call: KerasCall) -> str:
    args = [_tensor(call, n) for n in ("q", "k", "v")]
    if call.inputs.get("mask") is not None:
        args.append(call.inputs["mask"])
    if call.attrs["causal"]:
        args.append("causal=True")
    if call.inputs.get("bias") is not None:
        args.append(f"bias={call.inputs['bias']}")
    if call.attrs["scale"] is not None:
        args.append(f"scale={call.fmt(call.attrs['scale'])}")
    return f"_attention({', '.join(args)})"


# ---------------------------------------------------------------- layers

# constructor arguments written positionally, by Keras class
_POSITIONAL = {
    "Dense": ("units",),
    "Conv1D": ("filters", "kernel_size"),
    "Conv2D": ("filters", "kernel_size"),
    "Conv3D": ("filters", "kernel_size"),
    "Conv1DTranspose": ("filters", "kernel_size"),
    "Conv2DTranspose": ("filters", "kernel_size"),
    "Conv3DTranspose": ("filters", "kernel_size"),
    "DepthwiseConv1D": ("kernel_size",),
    "DepthwiseConv2D": ("kernel_size",),
    "Embedding": ("input_dim", "output_dim"),
    "GroupNormalization": ("groups",),
    "Dropout": ("rate",),
}
# Keras's defaults (per axis for tuples); channels_last is Keras's default image_data_format
_DEFAULTS = {
    "strides": 1,
    "padding": "valid",
    "dilation_rate": 1,
    "use_bias": True,
    "data_format": "channels_last",
    "groups": 1,
    "depth_multiplier": 1,
    "axis": -1,
    "output_padding": None,
    "dropout": 0.0,
}


def _is_keras_default(key: str, value) -> bool:
    if key not in _DEFAULTS:
        return False
    default = _DEFAULTS[key]
    return is_default(value, (default,) * len(value) if isinstance(value, tuple) else default)


def _arg_source(value, fmt) -> str:
    return sizes(value, fmt) if isinstance(value, tuple) else fmt(value)


def _layer_source(
    spec: KerasLayer,
    fmt,
    keep: tuple[str, ...] = (),
    cls: str | None = None,
    extra: dict[str, str] | None = None,
    **written: str | None,
) -> str:
    """`keras.layers.<cls>(...)` (or `cls(...)`) from a `keras_layer` spec: its leading
    arguments positional, the others by keyword unless Keras's default literal (`keep`
    always); `written` gives the source of some arguments directly, `extra` more keyword
    arguments (source)."""
    positional = _POSITIONAL.get(spec.cls, ())
    args = [_arg_source(spec.kwargs[k], fmt) for k in positional]
    args += [
        f"{k}={written.get(k) or _arg_source(v, fmt)}"
        for k, v in spec.kwargs.items()
        if k not in positional and (k in keep or not _is_keras_default(k, v))
    ]
    args += [f"{k}={v}" for k, v in (extra or {}).items()]
    return f"{cls or 'keras.layers.' + spec.cls}({', '.join(args)})"


def _plain(op: str) -> Callable[[dict, Callable], str]:
    def construct(cfg: dict, fmt) -> str:
        return _layer_source(keras_layer(op, cfg), fmt, extra=_initializers(op, cfg, fmt))

    return construct


# ---------------------------------------------------------------- initialisation


def torch_fans(op: str, cfg: dict) -> tuple:
    """(fan_in, fan_out) of the layer's PyTorch weight as torch.nn.init computes them
    (`size(1)` and `size(0)` times the kernel's elements), tagged sizes kept as expressions."""
    if op == "Linear":
        return cfg["in_features"], cfg["out"]
    if op == "Embedding":  # weight [vocab, dim]
        return cfg["dim"], cfg["vocab"]
    taps = prod(cfg["kernel"])
    if op in TRANSPOSED:  # weight [in, out / groups, *k]
        return cfg["out"] // cfg["groups"] * taps, cfg["in_channels"] * taps
    return cfg["in_channels"] // cfg["groups"] * taps, cfg["out"] * taps  # [out, in / groups, *k]


# the fans each `init=` scheme reads (a hyperparameter's scheme: both)
_FANS = {
    "default": ("fan_in",),
    "kaiming_uniform": ("fan_in",),
    "kaiming_normal": ("fan_in",),
    "xavier_uniform": ("fan_in", "fan_out"),
    "xavier_normal": ("fan_in", "fan_out"),
    "normal": (),
    "trunc_normal": (),
    "uniform": (),
    "constant": (),
    "zeros": (),
    "ones": (),
}


def _init_source(scheme, fans: tuple, fmt, masks: tuple[str, ...] = ()) -> str:
    """The Keras initializer of one weight: `scheme` as `init=` names it (or a hyperparameter
    holding one: Written), `masks` the zeros a Keras kernel keeps (`_TorchKernelInit`)."""
    hyper = isinstance(scheme, Written)
    if not hyper and scheme in ("zeros", "ones") and not masks:
        return fmt(scheme)  # Keras's own
    called = scheme.written() if isinstance(scheme, Initializer) else ()  # `normal(std=...)`
    scheme = scheme.scheme if isinstance(scheme, Initializer) else scheme
    keys = ("fan_in", "fan_out") if hyper else _FANS[scheme]
    args = [
        fmt(scheme),
        *(f"{k}={fmt(v)}" for k, v in zip(("fan_in", "fan_out"), fans, strict=True) if k in keys),
        *(f"{k}={fmt(v)}" for k, v in called),
        *masks,
    ]
    return f"{'_TorchKernelInit' if masks else '_TorchInit'}({', '.join(args)})"


def _initializers(op: str, cfg: dict, fmt) -> dict[str, str]:
    """PyTorch's initialisation of a Linear, convolution or Embedding as Keras initializer
    arguments (source): the weight's (`init=`, else PyTorch's default) and the bias's
    (`bias_init=`, else PyTorch's default)."""
    if op not in ("Linear", "Embedding", *CONVS):
        return {}
    fans = torch_fans(op, cfg)
    scheme = cfg.get("init") or "default"
    if op == "Embedding":  # its default is N(0, 1)
        if isinstance(scheme, Written):
            scheme = written(
                str(scheme), f'"normal" if {atom(fmt(scheme))} == "default" else {fmt(scheme)}'
            )
        elif scheme == "default":
            scheme = "normal"
        return {"embeddings_initializer": _init_source(scheme, fans, fmt)}
    masks: tuple[str, ...] = ()
    if op in CONVS and dilates_kernel(cfg, op in TRANSPOSED):
        masks = (f"kernel={fmt(tuple(cfg['kernel']))}", f"dilation={fmt(tuple(cfg['dilation']))}")
    if op in TRANSPOSED and not is_default(cfg["groups"], 1):
        masks += (f"groups={fmt(cfg['groups'])}",)
    key = "depthwise" if is_depthwise(op, cfg) else "kernel"
    out = {f"{key}_initializer": _init_source(scheme, fans, fmt, masks)}
    if masks:  # the zeros stay zero in training
        out[f"{key}_constraint"] = f"_KernelTaps({', '.join(masks)})"
    if cfg["bias"]:
        bias = cfg.get("bias_init")
        out["bias_initializer"] = _init_source(bias or "default", fans, fmt)
    return out


def _call_x(layer: str, call: KerasCall) -> str:
    return f"{layer}({_tensor(call, 'x')})"


def _call_training(layer: str, call: KerasCall) -> str:
    """A layer that computes differently in training (BatchNorm, Dropout)."""
    return f"{layer}({_tensor(call, 'x')}, {TRAINING}={TRAINING})"


def _linear_call(layer: str, call: KerasCall) -> str:
    """Dense wants a batch axis: a rank-1 input gets one for the call."""
    if call.in_types["x"].rank == 1:
        return f"{layer}({atom(_tensor(call, 'x'))}[None])[0]"
    return _call_x(layer, call)


def unit_strides(attrs: dict, fmt) -> str | None:
    """Source of the condition under which a convolution whose stride is a hyperparameter
    uses Keras's "same" (`strides_for_same`): `stride == 1`; None when it does not depend."""
    strides = strides_for_same(attrs)
    return " and ".join(f"{atom(fmt(s))} == 1" for s in strides) if strides else None


def _conv_construct(op: str) -> Callable[[dict, Callable], str]:
    def construct(cfg: dict, fmt) -> str:
        unit = unit_strides(cfg, fmt)
        padding = f'"same" if {unit} else "valid"' if unit else None
        return _layer_source(
            keras_layer(op, cfg),
            fmt,
            keep=("padding",) if unit else (),
            extra=_initializers(op, cfg, fmt),
            padding=padding,
        )

    return construct


def _conv_call(layer: str, call: KerasCall) -> str:
    attrs = call.attrs
    need(attrs, "pads", "a convolution call (KerasCall.attrs = {**layer.attrs, **node.attrs})")
    if strided_pointwise(attrs):  # TensorFlow's oneDNN bug: the unread elements cropped
        pads, attrs = pointwise_unpadded(attrs)
        x = _tensor(call, "x")
        if pads is not None:
            x = f"ops.pad({x}, {_widths(pads, call.fmt)})"
        x = f"_read_part({x}, {call.fmt(tuple(attrs['stride']))})"
        call = replace(call, attrs=attrs, inputs={**call.inputs, "x": x})
    if onednn_conv_bug(attrs, call.out_types[0].shape[-1]):  # one more column, dropped again
        widths = ((0, 0),) * (len(attrs["kernel"]) - 1) + ((0, attrs["stride"][-1]),)
        widened = f"ops.pad({_tensor(call, 'x')}, {_widths(widths, call.fmt)})"
        out = call.out_types[0]  # (what the widened convolution gives: one more column)
        wider = out.with_shape((*out.shape[:-1], out.shape[-1] + 1))
        y = (
            _conv_padded(
                layer,
                replace(
                    call,
                    inputs={**call.inputs, "x": widened},
                    out_types=[wider, *call.out_types[1:]],
                ),
            )
            + "[..., :-1, :]"
        )
    else:
        y = _conv_padded(layer, call)
    if call.in_types and dilation_loses_sizes(
        attrs, call.in_types["x"].shape, call.out_types[0].shape
    ):
        return _shaped_spatial(call, y)
    return y


def strided_pointwise(attrs: dict) -> bool:
    """Whether a convolution is 1×1 with a stride that may be > 1: TensorFlow's oneDNN
    gradient of one whose windows leave the end of an axis unread (an even size at stride 2)
    writes out of bounds (TensorFlow 2.21; heap corruption, a crash in `fit()`:
    tests/fuzz_regressions/keras_strided_1x1_conv_gradient.dnet). Its input, padded first
    (`pointwise_unpadded`), cropped to what the windows read (`_read_part`, at run time)
    computes the same numbers and gradients. ("same" pads nothing for a 1×1 window.)"""
    return all(k == 1 for k in attrs["kernel"]) and any(
        _may(s, lambda s: s > 1) for s in attrs["stride"]
    )


def pointwise_unpadded(attrs: dict) -> tuple[tuple | None, dict]:
    """(the explicit pads a `strided_pointwise` convolution applies before its crop, or None;
    its attrs without them)."""
    pads = attrs["pads"]
    if not any(pair is not None and any(pair) for pair in pads):
        return None, attrs
    return tuple(pads), {**attrs, "pads": tuple((0, 0) for _ in pads)}


def onednn_conv_bug(attrs: dict, width) -> bool:
    """Whether a convolution (`attrs`, output width `width`) may meet TensorFlow's oneDNN bug
    (2.21): a Conv2d/3d of one input channel with a stride > 1 on the last axis and an output
    width of 1 computes wrong numbers (tests/backends/test_upstream_bugs.py). Its input gets
    zeros for one more output column (a stride's worth at the end of the last axis: Keras's
    "same" pads it as before), which is dropped. A stride or width a hyperparameter sets (a
    block's `stride`) counts as possibly meeting it; the input channels are this instance's
    (a generic block with one input channel in some instance and not in this one is left to
    the emitter's per-instance decisions)."""
    return (
        len(attrs["kernel"]) >= 2
        and attrs["in_channels"] == 1
        and _may(attrs["stride"][-1], lambda s: s > 1)
        and (not isinstance(width, int) or _may(width, lambda w: w == 1))
    )


def _may(size, holds: Callable[[int], bool]) -> bool:
    """Whether `holds(size)` may be true in an instance: a size a hyperparameter sets may be
    any."""
    return (isinstance(size, Tagged) and not isinstance(size.expr, int)) or holds(size)


def _conv_padded(layer: str, call: KerasCall) -> str:
    """The convolution's call, its input padded as the layer does not."""
    attrs = call.attrs
    x = _tensor(call, "x")
    if keras_same(attrs) or not _has_pads(attrs):
        return f"{layer}({x})"
    if _pads_at_run_time(attrs):  # "same" that Keras's padding="same" misreads
        y = f"{layer}({_pad_same(x, attrs, call.fmt)})"
        return _shaped_spatial(call, y) if _loses_spatial_sizes(call) else y
    padded = f"ops.pad({x}, {_widths(attrs['pads'], call.fmt)})"
    unit = unit_strides(attrs, call.fmt)
    if unit is None:
        return f"{layer}({padded})"
    if not x.isidentifier():  # keep `x` written once: pad by zeros where "same" pads
        zeros = _widths(tuple((0, 0) for _ in attrs["pads"]), call.fmt)
        widths = _widths(attrs["pads"], call.fmt)
        return f"{layer}(ops.pad({x}, {zeros} if {unit} else {widths}))"
    return f"{layer}({x} if {unit} else {padded})"


def _crop(before, after, fmt) -> str:
    """A slice dropping `before` and `after` elements ("" for the whole axis)."""
    start = "" if is_default(before, 0) else fmt(before)
    if isinstance(after, Tagged):  # may be 0 in another instance: x[:-0] would be empty
        stop = f"-{atom(fmt(after))} or None"
    else:
        stop = "" if after == 0 else fmt(-after)
    return f"{start}:{stop}"


def keras_transposed_padding(attrs: dict) -> tuple[tuple | None, TransposedPadding]:
    """(the strides its input is spread by, or None; its `TransposedPadding`) for a Keras
    transposed convolution. One that runs at stride 1 over its spread input
    (`weights.spreads_input`) gets its output padding as zero rows appended to that input,
    each giving one output row of only the bias, and crops PyTorch's padding."""
    if not spreads_input(attrs):
        return None, transposed_padding(attrs)
    n = len(attrs["stride"])
    padding = TransposedPadding(tuple(attrs["output_padding"]), (0,) * n, tuple(attrs["pads"]))
    return tuple(attrs["stride"]), padding


def _conv_transpose_call(layer: str, call: KerasCall) -> str:
    """The layer's "valid" result cropped by PyTorch's padding; an output padding not below
    the stride comes from zero rows appended to the input (`backends.conv_transpose`)."""
    spread, padding = keras_transposed_padding(call.attrs)
    x = _tensor(call, "x")
    if spread is not None:
        x = f"_zero_upsample({x}, {call.fmt(spread)})"
    if any(padding.rows):
        x = f"ops.pad({x}, {_widths(tuple((0, r) for r in padding.rows), call.fmt)})"
    y = f"{layer}({x})"
    crops = [_crop(before, after, call.fmt) for before, after in padding.crops]
    while crops and crops[-1] == ":":
        crops.pop()
    return f"{y}[:, {', '.join(crops)}]" if crops else y


def _batchnorm_construct(cfg: dict, fmt) -> str:
    m = cfg["momentum"]
    momentum = f"1 - {atom(fmt(m))}" if isinstance(m, Written) else None
    # the runtime subclass: PyTorch's unbiased running variance in training
    return _layer_source(
        keras_layer("BatchNorm", cfg), fmt, keep=("axis",), cls="_BatchNorm", momentum=momentum
    )


def _recurrent_construct(op: str) -> Callable[[dict, Callable], str]:
    def construct(cfg: dict, fmt) -> str:
        spec = keras_layer(op, cfg)
        return (
            f"_Recurrent({fmt(spec.cls)}, {fmt(spec.kwargs['units'])}"
            + kwargs(
                ("num_layers", None if is_default(spec.stack, 1) else fmt(spec.stack)),
                ("bidirectional", "True" if spec.bidirectional else None),
            )
            + ")"
        )

    return construct


def _recurrent_call(layer: str, call: KerasCall) -> str:
    state = ", state=True" if call.attrs.get("state", False) else ""
    return f"{layer}({_tensor(call, 'x')}{state})"


def _mha_construct(cfg: dict, fmt) -> str:
    # the runtime subclass: PyTorch's initialisation
    return _layer_source(keras_layer("MultiHeadAttention", cfg), fmt, cls="_MultiHeadAttention")


def _mha_trains(attrs: dict) -> bool:
    """Whether the attention weights are dropped while training."""
    return not is_default(attrs.get("dropout", 0.0), 0.0)


def _mha_call(layer: str, call: KerasCall) -> str:
    q, k, v = (_tensor(call, n) for n in ("q", "k", "v"))
    mask, causal = call.inputs.get("mask"), call.attrs.get("causal", False)
    training = f", {TRAINING}={TRAINING}" if _mha_trains(call.attrs) else ""
    if mask is not None:
        causal_arg = ", causal=True" if causal else ""
        return f"_mha({layer}, {q}, {k}, {v}, {mask}{causal_arg}{training})"
    key = "" if k == v else f", key={k}"
    return f"{layer}({q}, {v}{key}{', use_causal_mask=True' if causal else ''}{training})"


# ---------------------------------------------------------------- the layer rules


@dataclass(frozen=True, kw_only=True)
class KerasLayerRule(LayerRow):
    """All that dualnet knows of one layer in Keras, registered as the op's Keras row.

    `construct`/`call`: the source rows (`LayerRow`). `layer(attrs)`: the Keras class and
    arguments (`weights.keras_layer`: what the constructor writes and `make_layer` builds).
    `weights`: (to Keras, from Keras) — `to(attrs, params)` is the layer's `get_weights()` list
    from PyTorch names and layouts, `back(attrs, weights)` the inverse (`weights.to_keras` /
    `from_keras`); None for a layer without weights. State walking (`state.py`): `classes`,
    the `keras.layers` classes whose instances are this op's leaves (a generated helper layer
    names its op instead: `dualnet_op`), and `leaf(layer, file shapes)`, the `leaves.Leaf`
    such a layer reads as; `first_call`: the tensors a load hands to the Keras initializers
    named, for a layer Keras builds only at its first call (BatchNorm, GroupNorm);
    `summed_biases`: Keras holds the sum of PyTorch's two biases (LSTM: a load records the
    pair). `training`: the layer computes differently in training (always, or for the
    attributes it is given true) and is called with `training=`."""

    layer: Callable[[dict], KerasLayer]
    weights: tuple[Callable, Callable] | None = None
    classes: tuple[str, ...] = ()
    leaf: Callable[[object, dict], Leaf] | None = None
    first_call: dict[str, str] = field(default_factory=dict)
    summed_biases: bool = False
    training: bool | Callable[[dict], bool] = False

    def trains(self, attrs: dict) -> bool:
        """Whether the layer with these attributes computes differently in training."""
        return self.training(attrs) if callable(self.training) else self.training


def _norm_layer(cls: str, **names: str | int) -> Callable[[dict], KerasLayer]:
    """A normalisation layer: Keras argument → config key (`axes` gives the trailing axes),
    or the argument's value itself where it is an int."""

    def layer(attrs: dict) -> KerasLayer:
        kwargs = {}
        for keras_name, key in names.items():
            if isinstance(key, int):
                kwargs[keras_name] = key
            elif key == "axes":
                axes = list(range(-attrs["axes"], 0))
                kwargs[keras_name] = axes[0] if len(axes) == 1 else axes
            elif key == "bias":  # LayerNorm(bias=false): center=False
                if not is_default(attrs[key], True):
                    kwargs[keras_name] = attrs[key]
            else:
                kwargs[keras_name] = attrs[key]
        return KerasLayer(cls, kwargs)

    return layer


_GAMMA_BETA = {"weight": "gamma_initializer", "bias": "beta_initializer"}
_MOVING = {"running_mean": "moving_mean_initializer", "running_var": "moving_variance_initializer"}

for _n in (1, 2, 3):
    _op = f"Conv{_n}d"
    ROWS.add(
        _op,
        KerasLayerRule(
            _conv_construct(_op),
            _conv_call,
            layer=partial(conv_layer, _op),
            weights=conv_weights(_op),
            classes=(f"Conv{_n}D", f"DepthwiseConv{_n}D") if _n < 3 else ("Conv3D",),
            leaf=conv_leaf(transposed=False),
        ),
    )
    _op = f"ConvTranspose{_n}d"
    ROWS.add(
        _op,
        KerasLayerRule(
            _plain(_op),
            _conv_transpose_call,
            layer=partial(conv_layer, _op),
            weights=conv_weights(_op),
            classes=(f"Conv{_n}DTranspose",),
            leaf=conv_leaf(transposed=True),
        ),
    )
ROWS.add(
    "Linear",
    KerasLayerRule(
        _plain("Linear"),
        _linear_call,
        layer=lambda a: KerasLayer("Dense", {"units": a["out"], "use_bias": bool(a["bias"])}),
        weights=(linear_to, linear_from),
        classes=("Dense",),
        leaf=dense_leaf,
    ),
)
ROWS.add(
    "Embedding",
    KerasLayerRule(
        _plain("Embedding"),
        lambda layer, call: f"{layer}({_tensor(call, 'ids')})",
        layer=lambda a: KerasLayer("Embedding", {"input_dim": a["vocab"], "output_dim": a["dim"]}),
        weights=in_order("weight"),
        classes=("Embedding",),
        leaf=embedding_leaf,
    ),
)
ROWS.add(
    "Dropout",
    KerasLayerRule(
        _plain("Dropout"),
        _call_training,
        layer=lambda a: KerasLayer("Dropout", {"rate": a["p"]}),
        training=True,
    ),
)
ROWS.add(
    "StochasticDepth",
    KerasLayerRule(
        lambda cfg, fmt: f"_StochasticDepth({fmt(cfg['p'])}, {fmt(cfg['mode'])})",
        _call_training,
        layer=lambda a: KerasLayer("Dropout", {"rate": a["p"]}),  # `_StochasticDepth`'s base
        training=True,
    ),
)
ROWS.add(
    "Identity", KerasLayerRule(_plain("Identity"), _call_x, layer=lambda a: KerasLayer("Identity"))
)
ROWS.add(
    "BatchNorm",
    KerasLayerRule(
        _batchnorm_construct,
        _call_training,
        layer=lambda a: KerasLayer(
            "BatchNormalization",
            {"axis": -1, "epsilon": a["eps"], "momentum": complement(a["momentum"])},
        ),
        weights=in_order(*_GAMMA_BETA, *_MOVING),
        classes=("BatchNormalization",),
        leaf=per_channel_leaf("BatchNorm", (*_GAMMA_BETA, *_MOVING)),
        first_call={**_GAMMA_BETA, **_MOVING},
        training=True,
    ),
)
ROWS.add(
    "LayerNorm",
    KerasLayerRule(
        _plain("LayerNorm"),
        _call_x,
        layer=_norm_layer("LayerNormalization", axis="axes", epsilon="eps", center="bias"),
        weights=in_order("weight", "bias"),
        classes=("LayerNormalization",),
        leaf=normalized_leaf("LayerNorm", ("weight", "bias")),
    ),
)
ROWS.add(
    "LayerNorm2d",  # channels-last: the last axis. Its Keras layer reads as a LayerNorm's
    KerasLayerRule(
        _plain("LayerNorm2d"),
        _call_x,
        layer=_norm_layer("LayerNormalization", axis=-1, epsilon="eps", center="bias"),
        weights=in_order("weight", "bias"),
    ),
)
ROWS.add(
    "RMSNorm",
    KerasLayerRule(
        _plain("RMSNorm"),
        _call_x,
        layer=_norm_layer("RMSNormalization", axis="axes", epsilon="eps"),
        weights=in_order("weight"),  # Keras's `scale`: the same formula, shape and values
        classes=("RMSNormalization",),
        leaf=normalized_leaf("RMSNorm", ("weight",)),
    ),
)
ROWS.add(
    "GroupNorm",
    KerasLayerRule(
        _plain("GroupNorm"),
        _call_x,
        layer=lambda a: KerasLayer(
            "GroupNormalization", {"groups": a["groups"], "axis": -1, "epsilon": a["eps"]}
        ),
        weights=in_order(*_GAMMA_BETA),
        classes=("GroupNormalization",),
        leaf=per_channel_leaf("GroupNorm", tuple(_GAMMA_BETA)),
        first_call=_GAMMA_BETA,
    ),
)
for _op in ("LSTM", "GRU"):
    ROWS.add(
        _op,
        KerasLayerRule(
            _recurrent_construct(_op),
            _recurrent_call,
            layer=partial(rnn_layer, _op),
            weights=rnn_weights(_op),
            leaf=rnn_leaf,  # the generated `_Recurrent` names its op (`dualnet_op`)
            summed_biases=_op == "LSTM",
        ),
    )
ROWS.add(
    "MultiHeadAttention",
    KerasLayerRule(
        _mha_construct,
        _mha_call,
        layer=lambda a: KerasLayer(
            "MultiHeadAttention",
            {
                "num_heads": a["heads"],
                "key_dim": a["dim"] // a["heads"],
                "use_bias": bool(a["bias"]),
                "dropout": a["dropout"],
            },
        ),
        weights=MHA_WEIGHTS,
        classes=("MultiHeadAttention",),
        leaf=attention_leaf,
        training=_mha_trains,
    ),
)


_DRAW_ARGS = {
    "constant": ("value",),
    "normal": ("mean", "std"),
    "uniform": ("a", "b"),
    "trunc_normal": ("mean", "std", "a", "b"),
    "table": ("table",),  # a Buffer(expr)'s values, computed when the model was checked
}


def _free_construct(op: str) -> Callable[[dict, Callable], str]:
    """`_Parameter(shape, ...)`: the runtime layer holding a Parameter's or Buffer's tensor."""

    def construct(cfg: dict, fmt) -> str:
        init, dtype = cfg["init"], cfg["dtype"]
        drawn = _DRAW_ARGS.get(init, ())
        args = "{" + ", ".join(f"{fmt(k)}: {fmt(cfg[k])}" for k in drawn) + "}"
        trainable = cfg.get("trainable", False)
        return (
            f"_Parameter({fmt(tuple(cfg['shape']))}"
            + kwargs(
                ("init", None if is_default(init, "zeros") else fmt(init)),
                ("args", args if drawn else None),
                ("dualnet_op", None if op == "Parameter" else fmt(op)),
                ("trainable", None if is_default(trainable, True) else fmt(trainable)),
                ("dtype", None if dtype is DType.f32 else fmt(KERAS_DTYPES[dtype])),
            )
            + ")"
        )

    return construct


for _op in FREE_TENSORS:
    ROWS.add(
        _op,
        KerasLayerRule(
            _free_construct(_op),
            lambda layer, call: f"{layer}.weight",
            layer=lambda a: KerasLayer("_Parameter", {"shape": a["shape"]}),
            weights=in_order(""),
            leaf=free_leaf,  # the generated `_Parameter` names its op (`dualnet_op`)
        ),
    )


# ---------------------------------------------------------------- losses and metrics

# op → the runtime helper computing it and its attributes' defaults there (left out)
LOSS_HELPERS = {  # cross_entropy: its own row below
    "smooth_l1": ("_smooth_l1", {"reduction": "mean", "beta": 1.0}),
    "huber": ("_huber", {"reduction": "mean", "delta": 1.0}),
    "binary_cross_entropy_with_logits": ("_bce_with_logits", {"reduction": "mean"}),
    "kl_div": ("_kl_div", {"reduction": "mean", "log_target": False}),
    "accuracy": ("_accuracy", {}),
    "top_k_accuracy": ("_top_k_accuracy", {"k": None}),
}


def _loss_call(call: KerasCall, helper: str, defaults: dict) -> str:
    extra = kwargs(
        ("weight", call.inputs.get("weight")),
        *(default_kw(call, a, a, d) for a, d in defaults.items()),
        ("pos_weight", call.inputs.get("pos_weight")),
    )
    return f"{helper}({_tensor(call, 'input')}, {_tensor(call, 'target')}{extra})"


def _loss(helper: str, defaults: dict) -> Callable[[KerasCall], str]:
    return lambda call: _loss_call(call, helper, defaults)


for _op, (_helper, _defaults) in LOSS_HELPERS.items():
    ROWS.function(_op)(_loss(_helper, _defaults))


@ROWS.function("cross_entropy")
def _cross_entropy(call: KerasCall) -> str:
    """Class indices or (a float target) class probabilities: one runtime helper each."""
    defaults = {"label_smoothing": 0.0, "reduction": "mean"}
    if call.in_types["target"].dtype.is_float:
        return _loss_call(call, "_cross_entropy_probs", defaults)
    return _loss_call(call, "_cross_entropy", {**defaults, "ignore_index": -100})


@ROWS.function("nll")
def _nll(call: KerasCall) -> str:
    args = [_tensor(call, "input"), _tensor(call, "target")]
    args += [call.fmt(call.attrs["ignore_index"]), call.fmt(call.attrs["reduction"])]
    weight = call.inputs.get("weight")
    return f"_class_loss({', '.join(args)}{'' if weight is None else ', weight=' + weight})"


def _mean_error(fn: str) -> Callable[[KerasCall], str]:
    """fn(input - target) (ops.square, ops.abs), reduced by ops.mean or ops.sum."""

    def lower(call: KerasCall) -> str:
        loss = f"{fn}({_tensor(call, 'input')} - {_tensor(call, 'target')})"
        reduction = call.attrs["reduction"]
        return loss if reduction == "none" else f"ops.{reduction}({loss})"

    return lower


ROWS.function("mse")(_mean_error("ops.square"))
ROWS.function("l1")(_mean_error("ops.abs"))


HELPERS = helper_sources(RUNTIME / "keras_helpers.py")
"""The runtime helpers' source by name (`runtime/keras_helpers.py`, read, never imported)."""


def helpers_needed(source: str) -> list[str]:
    """The runtime helpers `source` uses, with the helpers those use, in HELPERS order."""
    return helpers_used(source, HELPERS)


ROWS.register()  # OpDef.lowerings["keras"]: one row per op
