"""The PyTorch lowering table: one row per registry op, each turning one IR node into readable,
idiomatic PyTorch source (`import torch`, `from torch import nn`, `import torch.nn.functional
as F`). This module only produces strings: it never imports torch.

The rows (`ROWS`, registered on the ops: `rows.lowering_row(op, "torch")`) start from the
ones every Python-source backend shares (`python_rows.shared_rows`, spelt by the `TORCH`
dialect) and override the rows that differ. A function's row (`FunctionRow`) lowers a node to
one Python expression; a layer's (`LayerRow`) gives a constructor expression for `__init__`
and a call expression for `forward`. Every row
computes exactly the op's NumPy reference (LANGUAGE.md, CONVENTIONS.md); where a plain torch
call differs, the row fixes it inline or calls a runtime helper (`HELPERS`, see
`helpers_needed`). What every backend writes alike (number literals, bracketing, defaults left
out, argument lists, Python indexing) comes from `backends.source_helpers`. The differences
handled, op by op:

- `padding="same"` is TensorFlow's rule (odd pixel at the end) for every stride. Conv with
  stride 1 and symmetric pads uses PyTorch's own `padding="same"` (the same rule for stride 1);
  asymmetric pads become an explicit `F.pad` (`-inf` for max pooling; the count-excluding
  average pool divides by a pooled mask, `_avg_pool`), and pads that depend on a symbolic size
  (None in the IR) are computed at run time by `_pad_same`.
- `F.avg_pool3d` refuses an input smaller than its kernel even where the padding makes the
  window fit: where an axis may be that small (a symbolic size), the pads are an `F.pad`
  (or `_avg_pool`) first (`_smaller_than_kernel`).
- `pad` lists (before, after) pairs in axis order; `F.pad` wants them last axis first.
- `upsample(mode="nearest")` with a scale that is not a power of two uses `mode="nearest-exact"`:
  PyTorch's "nearest" multiplies by the float32 reciprocal of the scale and picks the wrong
  pixel for scales such as 41 or 47; "nearest-exact" is x[i // s] exactly for integer scales.
- `sum` of an i32 tensor would be i64 in PyTorch: `dtype=torch.int32` keeps dualnet's type.
- `cumsum` of an i32 tensor likewise (`dtype=torch.int32`).
- `//` of float tensors is `torch.floor(a / b)`: PyTorch's own float floor division
  computes the quotient from fmod and differs where a / b rounds to a whole number.
- `zeros`, `ones` and `full` always write their dtype (PyTorch's default dtype can be changed)
  and the inputs' device; `expand` writes -1 for each axis it keeps.
- `clamp` of an integer tensor takes integer bounds (float bounds would make it float).
- Attention masks are bool with true = may attend. SDPA's bool mask means the same, but a
  query that may attend no key gives NaN in PyTorch and 0 in dualnet (`_attention`);
  MultiHeadAttention is `_MultiheadAttention`, an nn.MultiheadAttention (its parameter
  names) called with dualnet's mask and computed with F.linear and SDPA, and there the fully
  masked query's result is out_proj's bias.
- BatchNorm's `num_batches_tracked` buffer is not in dualnet's weight files (`_bn`).
- LSTM's (y, (h, c)) becomes (y, h, c) (`_unpack_lstm`); LSTM/GRU return y alone unless the
  node's `state` is true.
- A layer's `init=` other than "default" redraws its weight with torch.nn.init's function of
  that name after PyTorch's own initialisation (`_init`); the fans are PyTorch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dualnet.backends.common.python_rows import Dialect, shared_rows
from dualnet.backends.common.source_helpers import (
    NodeCall,
    atom,
    axes_arg,
    default_kw,
    default_literal_dtype,
    helpers_used,
    is_default,
    is_number,
    kwargs,
    left_operand,
    need,
    operands,
    pad_value,
    reshape_sizes,
    result_dtype,
    sizes,
)
from dualnet.backends.rows import Rows
from dualnet.backends.runtime_source import RUNTIME, helper_sources
from dualnet.ir.tagged import Written
from dualnet.ir.types import DType
from dualnet.ops.common import Initializer

TORCH_DTYPES = {d: f"torch.{d.framework}" for d in DType}


@dataclass
class TorchCall(NodeCall):
    """One node as the PyTorch lowering sees it (fields: see `NodeCall`). An optional
    `_device` entry of `attrs` (source such as "x.device") places tensors a lowering creates
    from nothing (`arange`, a literal turned into a tensor); without it they are created on
    the default device."""


# ---------------------------------------------------------------- source helpers


def _tensor(call: TorchCall, name: str) -> str:
    """Input `name` as a tensor: a number (a literal, a hyperparameter, a constant) becomes
    torch.tensor(number, dtype=...)."""
    src = call.inputs[name]
    if not is_number(call, name):
        return src
    args = [src]
    t = call.in_types.get(name)
    if t is not None:
        args.append(f"dtype={TORCH_DTYPES[t.dtype]}")
    if call.attrs.get("_device"):
        args.append(f"device={call.attrs['_device']}")
    return f"torch.tensor({', '.join(args)})"


def _recv(call: TorchCall, name: str) -> str:
    """Input `name` as the receiver of a method call (`x.mean(...)`)."""
    return atom(_tensor(call, name))


def _flat_pads(pairs) -> tuple:
    """(before, after) pairs in axis order as F.pad's flat tuple (last axis first)."""
    return tuple(p for pair in reversed(tuple(pairs)) for p in pair)


# ---------------------------------------------------------------- the shared rows

TORCH = Dialect(
    tensor=_tensor,
    dtype=TORCH_DTYPES.__getitem__,
    functions={
        **{name: f"torch.{name}" for name in ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt")},
        **{name: f"torch.{name}" for name in ("sin", "cos", "erf")},
        **{name: f"torch.{name}" for name in ("abs", "round", "floor", "where")},
        **{name: f"F.{name}" for name in ("relu", "silu", "leaky_relu", "elu")},
        **{name: f"F.{name}" for name in ("relu6", "hardsigmoid", "hardswish", "mish")},
        **{name: f"F.{name}" for name in ("softmax", "log_softmax")},
        "concat": "torch.cat",
        **{name: f"torch.{name}" for name in ("stack", "roll")},
    },
    methods={
        "cast": "to",
        "stop_gradient": "detach",
        "transpose": "transpose",
        "permute": "permute",
        "split": "chunk",  # divisible sizes: chunk gives exactly n equal parts
        "unsqueeze": "unsqueeze",
    },
    axis="dim",
    leaky_slope=0.01,
)
ROWS = Rows("torch", shared_rows(TORCH))  # the rows below override or add to these


# ---------------------------------------------------------------- element-wise


def _activation(name: str):
    def row(call: TorchCall) -> str:
        # `_inplace`: the emitter proved the input is a fresh temporary nothing else reads and
        # autograd does not keep (torchvision's ReLU/SiLU/Hardswish(inplace=True): no new
        # allocation, which at batch 32 costs more than the activation itself)
        inplace = ", inplace=True" if call.attrs.get("_inplace") else ""
        return f"{TORCH.functions[name]}({_tensor(call, 'x')}{inplace})"

    return row


for _name in ("relu", "silu", "hardswish"):
    ROWS.function(_name)(_activation(_name))


@ROWS.function("gelu")
def _gelu(call: TorchCall) -> str:
    mode = call.attrs["approximate"]
    extra = "" if is_default(mode, "none") else f", approximate={call.fmt(mode)}"
    return f"F.gelu({_tensor(call, 'x')}{extra})"


@ROWS.function("softplus")
def _softplus(call: TorchCall) -> str:
    extra = kwargs(
        default_kw(call, "beta", "beta", 1.0), default_kw(call, "threshold", "threshold", 20.0)
    )
    return f"F.softplus({_tensor(call, 'x')}{extra})"


@ROWS.function("clamp")
def _clamp(call: TorchCall) -> str:
    lo, hi = call.attrs["lo"], call.attrs["hi"]
    x = _tensor(call, "x")
    if lo is None and hi is None:
        return x
    if result_dtype(call).is_int:  # clip then truncate == clip to truncated bounds
        lo, hi = (None if v is None else int(math.trunc(v)) for v in (lo, hi))
    bounds = kwargs(
        ("min", None if lo is None else call.fmt(lo)), ("max", None if hi is None else call.fmt(hi))
    )
    return f"torch.clamp({x}{bounds})"


_int_floordiv = ROWS["floordiv"].lower  # the shared `a // b`


@ROWS.function("floordiv")
def _floordiv(call: TorchCall) -> str:
    if not result_dtype(call).is_float:
        return _int_floordiv(call)
    a, b = operands(call, "floordiv", _tensor)  # floor(a / b), not PyTorch's fmod-based quotient
    return f"torch.floor({left_operand(a, '/')} / {atom(b)})"


# ---------------------------------------------------------------- reductions


def _reduce(method: str) -> Callable[[TorchCall], str]:
    def lower(call: TorchCall) -> str:
        args = [f"dim={axes_arg(call.attrs['axis'], call.fmt)}"]
        if call.attrs["keepdims"]:
            args.append("keepdim=True")
        if method == "sum" and result_dtype(call) == DType.i32:
            args.append("dtype=torch.int32")  # torch sums integers to i64
        return f"{_recv(call, 'x')}.{method}({', '.join(args)})"

    return lower


@ROWS.function("cumsum")
def _cumsum(call: TorchCall) -> str:
    extra = ", dtype=torch.int32" if result_dtype(call) == DType.i32 else ""  # else i64
    return f"torch.cumsum({_tensor(call, 'x')}, dim={call.fmt(call.attrs['axis'])}{extra})"


def _arg(method: str) -> Callable[[TorchCall], str]:
    def lower(call: TorchCall) -> str:
        keep = ", keepdim=True" if call.attrs["keepdims"] else ""
        return f"{_recv(call, 'x')}.{method}(dim={call.fmt(call.attrs['axis'])}{keep})"

    return lower


for _op, _method in (("mean", "mean"), ("sum", "sum"), ("max", "amax"), ("min", "amin")):
    ROWS.function(_op)(_reduce(_method))
for _op in ("argmax", "argmin"):
    ROWS.function(_op)(_arg(_op))


# ---------------------------------------------------------------- shape ops


@ROWS.function("flatten")
def _flatten(call: TorchCall) -> str:
    start = call.attrs["start"]
    return f"{_recv(call, 'x')}.flatten({'' if start == 0 else call.fmt(start)})"


@ROWS.function("reshape")
def _reshape(call: TorchCall) -> str:
    texts = reshape_sizes(call.attrs["dims"], call.fmt)
    return f"{_recv(call, 'x')}.reshape({', '.join(texts) if texts else '()'})"


@ROWS.function("squeeze")
def _squeeze(call: TorchCall) -> str:
    return f"{_recv(call, 'x')}.squeeze({call.fmt(call.attrs['axis'])})"


@ROWS.function("pad")
def _pad(call: TorchCall) -> str:
    pairs = list(call.attrs["pads"])
    while pairs and pairs[0] == (0, 0):  # F.pad pads the last len(pads) // 2 axes
        pairs.pop(0)
    x = _tensor(call, "x")
    if not pairs:
        return x
    value = call.attrs["value"]
    extra = "" if value == 0 else f", value={pad_value(call, value)}"
    return f"F.pad({x}, {call.fmt(_flat_pads(pairs))}{extra})"


@ROWS.function("upsample")
def _upsample(call: TorchCall) -> str:
    scale = call.attrs["scale"]
    x = _tensor(call, "x")
    factor = sizes(scale, call.fmt)
    if call.attrs["mode"] == "bilinear":
        return f'F.interpolate({x}, scale_factor={factor}, mode="bilinear", align_corners=False)'
    if all(s & (s - 1) == 0 for s in scale):  # 1 / s is exact in float32
        return f"F.interpolate({x}, scale_factor={factor})"
    return f'F.interpolate({x}, scale_factor={factor}, mode="nearest-exact")'


@ROWS.function("arange")
def _arange(call: TorchCall) -> str:
    device = call.attrs.get("_device")
    return f"torch.arange({call.fmt(call.attrs['n'])}{kwargs(('device', device))})"


@ROWS.function("expand")
def _expand(call: TorchCall) -> str:
    """`x.expand(sizes)`, -1 for each axis of x it keeps."""
    shape = tuple(call.attrs["shape"])
    x_type = call.in_types.get("x")
    kept = x_type.shape if x_type is not None else ()
    new = len(shape) - len(kept)
    dims = ["-1" if i >= new and kept[i - new] == d else call.fmt(d) for i, d in enumerate(shape)]
    return f"{_recv(call, 'x')}.expand({', '.join(dims) or '()'})"


@ROWS.function("broadcast_to")
def _broadcast_to(call: TorchCall) -> str:
    return f"torch.broadcast_to({_tensor(call, 'x')}, {call.fmt(tuple(call.attrs['shape']))})"


@ROWS.function("chunk")
def _chunk(call: TorchCall) -> str:
    if len(call.attrs["sizes"]) == 1:  # one part: x itself (chunk would give a 1-tuple)
        return _tensor(call, "x")
    chunks, axis = (call.fmt(call.attrs[k]) for k in ("chunks", "axis"))
    return f"{_recv(call, 'x')}.chunk({chunks}, dim={axis})"


@ROWS.function("take")
def _take(call: TorchCall) -> str:
    index = ", ".join([":"] * call.attrs["axis"] + [call.inputs["index"]])
    return f"{_recv(call, 'x')}[{index}]"


@ROWS.function("gather")
def _gather(call: TorchCall) -> str:
    x, axis = _tensor(call, "x"), call.fmt(call.attrs["axis"])
    return f"torch.gather({x}, {axis}, {call.inputs['index']})"


def _filled(op: str) -> Callable[[TorchCall], str]:
    """zeros, ones, full: a shape, full's value, the dtype, the device of the inputs."""

    def lower(call: TorchCall) -> str:
        attrs = call.attrs
        value = f", {call.fmt(attrs['value'])}" if op == "full" else ""
        extra = kwargs(("dtype", TORCH_DTYPES[attrs["dtype"]]), ("device", attrs.get("_device")))
        return f"torch.{op}({call.fmt(tuple(attrs['shape']))}{value}{extra})"

    return lower


def _filled_like(op: str) -> Callable[[TorchCall], str]:
    """zeros_like, ones_like, full_like: the dtype written where it is not x's."""

    def lower(call: TorchCall) -> str:
        x_type, dtype = call.in_types.get("x"), call.attrs["dtype"]
        value = f", {call.fmt(call.attrs['value'])}" if op == "full" else ""
        same = x_type is not None and x_type.dtype == dtype
        extra = kwargs(("dtype", None if same else TORCH_DTYPES[dtype]))
        return f"torch.{op}_like({_tensor(call, 'x')}{value}{extra})"

    return lower


@ROWS.function("tensor")
def _tensor_literal(call: TorchCall) -> str:
    """torch.tensor of the nested numbers, on the inputs' device; the dtype left to PyTorch
    where it is its own choice (f32 for floats: the default dtype, as in PyTorch)."""
    attrs = call.attrs
    dtype = None if default_literal_dtype(attrs) else TORCH_DTYPES[attrs["dtype"]]
    extra = kwargs(("dtype", dtype), ("device", attrs.get("_device")))
    return f"torch.tensor({call.fmt(attrs['data'])}{extra})"


for _op in ("zeros", "ones", "full"):
    ROWS.function(_op)(_filled(_op))
    ROWS.function(f"{_op}_like")(_filled_like(_op))


# ---------------------------------------------------------------- pooling


def _window_padding(attrs: dict) -> tuple[str, Any]:
    """How a window op pads: ("args", pads) — PyTorch's symmetric `padding=` argument;
    ("pad", flat) — an explicit F.pad first; ("runtime", None) — "same" on a symbolic size."""
    pads = attrs["pads"]
    if any(p is None for p in pads):
        return "runtime", None
    if all(before == after for before, after in pads):
        return "args", tuple(before for before, _ in pads)
    return "pad", _flat_pads(pads)


def _pool_args(call: TorchCall, padding: tuple | None) -> str:
    kernel, stride = call.attrs["kernel"], call.attrs["stride"]
    fmt = call.fmt
    return f"kernel_size={sizes(kernel, fmt)}" + kwargs(
        ("stride", None if stride == kernel else sizes(stride, fmt)),
        (
            "padding",
            None
            if not padding or is_default(padding, (0,) * len(padding))
            else sizes(padding, fmt),
        ),
    )


def _ceil_padding(attrs: dict) -> tuple:
    """ceil_mode's `padding=`: the pads before (the rule put the last window's extra ones
    after them; PyTorch's ceil_mode adds those itself)."""
    return tuple(before for before, _ in attrs["pads"])


def _max_pool(n: int) -> Callable[[TorchCall], str]:
    def lower(call: TorchCall) -> str:
        kind, value = _window_padding(call.attrs)
        x = _tensor(call, "x")
        fmt = call.fmt
        if call.attrs["ceil_mode"]:
            args = _pool_args(call, _ceil_padding(call.attrs))
            return f"F.max_pool{n}d({x}, {args}, ceil_mode=True)"
        if kind == "pad":
            x = f'F.pad({x}, {fmt(value)}, value=float("-inf"))'
        elif kind == "runtime":
            x = (
                f"_pad_same({x}, {fmt(call.attrs['kernel'])}, {fmt(call.attrs['stride'])}, "
                'value=float("-inf"))'
            )
        return f"F.max_pool{n}d({x}, {_pool_args(call, value if kind == 'args' else None)})"

    return lower


def _smaller_than_kernel(call: TorchCall) -> bool:
    """Whether an axis of x may be smaller than the kernel (symbolic: it may), which
    F.avg_pool3d refuses even where its padding makes the window fit (2-d pooling accepts
    it; tests/backends/test_upstream_bugs.py)."""
    if not call.in_types:
        return True
    spatial = call.in_types["x"].shape[2:]
    return not all(
        isinstance(m, int) and m >= k for m, k in zip(spatial, call.attrs["kernel"], strict=True)
    )


def _avg_pool(n: int) -> Callable[[TorchCall], str]:
    def lower(call: TorchCall) -> str:
        kind, value = _window_padding(call.attrs)
        x = _tensor(call, "x")
        fmt = call.fmt
        kernel, stride = call.attrs["kernel"], call.attrs["stride"]
        include = call.attrs["count_include_pad"]
        explicit = n == 3 and _smaller_than_kernel(call)  # pads written out: F.pad first
        if call.attrs["ceil_mode"]:
            padding = _ceil_padding(call.attrs)
            if explicit and any(padding) and not include:  # the rule's pads, floor mode
                return f"_avg_pool({x}, {fmt(kernel)}, {fmt(stride)}, {fmt(call.attrs['pads'])})"
            if explicit and any(padding):  # (p, p) counted, then PyTorch's ceil_mode
                x = f"F.pad({x}, {fmt(_flat_pads((p, p) for p in padding))})"
                return f"F.avg_pool{n}d({x}, {_pool_args(call, None)}, ceil_mode=True)"
            extra = "" if include or not any(padding) else ", count_include_pad=False"
            return f"F.avg_pool{n}d({x}, {_pool_args(call, padding)}, ceil_mode=True{extra})"
        if kind == "args" and explicit and any(value):
            kind, value = "pad", _flat_pads(call.attrs["pads"])
        if kind == "args":
            extra = "" if include or not any(value) else ", count_include_pad=False"
            return f"F.avg_pool{n}d({x}, {_pool_args(call, value)}{extra})"
        if not include:  # divide by the real elements under each window
            pads = "None" if kind == "runtime" else fmt(tuple(call.attrs["pads"]))
            return f"_avg_pool({x}, {fmt(kernel)}, {fmt(stride)}, {pads})"
        if kind == "pad":
            x = f"F.pad({x}, {fmt(value)})"
        else:
            x = f"_pad_same({x}, {fmt(kernel)}, {fmt(stride)})"
        return f"F.avg_pool{n}d({x}, {_pool_args(call, None)})"

    return lower


for _n in (1, 2, 3):
    ROWS.function(f"max_pool{_n}d")(_max_pool(_n))
    ROWS.function(f"avg_pool{_n}d")(_avg_pool(_n))


@ROWS.function("global_avg_pool")
def _global_avg_pool(call: TorchCall) -> str:
    return f"{_recv(call, 'x')}.mean(dim={axes_arg(call.attrs['axes'], call.fmt)})"


@ROWS.function("adaptive_avg_pool2d", "adaptive_avg_pool3d")
def _adaptive_avg_pool(call: TorchCall) -> str:
    # the rule allows a symbolic output size only where it equals the input's: PyTorch's None
    size = tuple(o if isinstance(o, int) else None for o in call.attrs["size"])
    text = sizes(size, call.fmt) if None not in size else call.fmt(size)
    return f"F.adaptive_avg_pool{len(size)}d({_tensor(call, 'x')}, {text})"


# ---------------------------------------------------------------- attention


@ROWS.function("scaled_dot_product_attention")
def _sdpa(call: TorchCall) -> str:
    q, k, v = (_tensor(call, n) for n in ("q", "k", "v"))
    mask, bias, scale = call.inputs.get("mask"), call.inputs.get("bias"), call.attrs["scale"]
    extra = "" if scale is None else f", scale={call.fmt(scale)}"
    if mask is None and bias is None:
        causal = ", is_causal=True" if call.attrs["causal"] else ""
        return f"F.scaled_dot_product_attention({q}, {k}, {v}{causal}{extra})"
    # a bool mask (PyTorch: NaN for a query that sees no key) or a float bias (one attn_mask
    # of rank >= 2, which also takes the causal rule): the helper combines them
    args = [q, k, v] + ([mask] if mask is not None else [])
    args += ["causal=True"] * bool(call.attrs["causal"]) + [f"bias={bias}"] * (bias is not None)
    return f"_attention({', '.join(args)}{extra})"


# ---------------------------------------------------------------- layers


def _call_x(module: str, call: TorchCall) -> str:
    return f"{module}({_tensor(call, 'x')})"


def _conv_padding(attrs: dict) -> tuple[str, Any]:
    """("args", source or None) — nn.Conv's own `padding`; ("pad", flat) — F.pad before the
    call; ("runtime", None) — "same" on a symbolic size, padded by _pad_same."""
    kind, value = _window_padding(attrs)
    if kind != "args":
        return kind, value
    if attrs.get("padding") == "same" and all(s == 1 for s in attrs["stride"]):
        return "args", "same"  # PyTorch's "same" is TensorFlow's rule for stride 1
    return "args", None if is_default(value, (0,) * len(value)) else value


def _conv_construct(n: int) -> Callable[[dict, Callable], str]:
    def construct(cfg: dict, fmt) -> str:
        kind, value = _conv_padding(cfg)
        padding = None
        if kind == "args" and value is not None:
            padding = fmt(value) if value == "same" else sizes(value, fmt)
        ones = (1,) * n
        args = (
            f"{fmt(cfg['in_channels'])}, {fmt(cfg['out'])}, kernel_size={sizes(cfg['kernel'], fmt)}"
        )
        return (
            f"nn.Conv{n}d({args}"
            + kwargs(
                ("stride", None if is_default(cfg["stride"], ones) else sizes(cfg["stride"], fmt)),
                ("padding", padding),
                (
                    "dilation",
                    None if is_default(cfg["dilation"], ones) else sizes(cfg["dilation"], fmt),
                ),
                ("groups", None if is_default(cfg["groups"], 1) else fmt(cfg["groups"])),
                ("bias", None if cfg["bias"] else "False"),
            )
            + ")"
        )

    return construct


def conv_input(call: TorchCall) -> str:
    """A convolution's input as its call passes it: padded first where the padding is not
    nn.Conv's own `padding=` (asymmetric, or "same" over a symbolic size)."""
    attrs, fmt = call.attrs, call.fmt
    need(attrs, "pads", "a convolution call (TorchCall.attrs = {**layer.attrs, **node.attrs})")
    kind, value = _conv_padding(attrs)
    x = _tensor(call, "x")
    if kind == "pad":
        return f"F.pad({x}, {fmt(value)})"
    if kind == "runtime":
        dilation = attrs["dilation"]
        extra = "" if all(d == 1 for d in dilation) else f", {fmt(dilation)}"
        return f"_pad_same({x}, {fmt(attrs['kernel'])}, {fmt(attrs['stride'])}{extra})"
    return x


def _conv_call(module: str, call: TorchCall) -> str:
    return f"{module}({conv_input(call)})"


def _conv_transpose_construct(cfg: dict, fmt) -> str:
    padding = tuple(before for before, _ in cfg["pads"])
    ones = (1,) * len(padding)
    args = f"{fmt(cfg['in_channels'])}, {fmt(cfg['out'])}, kernel_size={sizes(cfg['kernel'], fmt)}"
    return (
        f"nn.ConvTranspose{len(padding)}d({args}"
        + kwargs(
            ("stride", None if is_default(cfg["stride"], ones) else sizes(cfg["stride"], fmt)),
            ("padding", sizes(padding, fmt) if any(padding) else None),
            (
                "output_padding",
                sizes(cfg["output_padding"], fmt) if any(cfg["output_padding"]) else None,
            ),
            ("groups", None if is_default(cfg["groups"], 1) else fmt(cfg["groups"])),
            ("bias", None if cfg["bias"] else "False"),
            (
                "dilation",
                None if is_default(cfg["dilation"], ones) else sizes(cfg["dilation"], fmt),
            ),
        )
        + ")"
    )


def _linear_construct(cfg: dict, fmt) -> str:
    bias = "" if cfg["bias"] else ", bias=False"
    return f"nn.Linear({fmt(cfg['in_features'])}, {fmt(cfg['out'])}{bias})"


def _batchnorm_construct(cfg: dict, fmt) -> str:
    rank = need(cfg, "rank", "BatchNorm's constructor (BatchNorm1d/2d/3d by input rank)")
    kind = {2: 1, 3: 1, 4: 2, 5: 3}[rank]
    return (
        f"_bn(nn.BatchNorm{kind}d({fmt(cfg['num_features'])}, eps={fmt(cfg['eps'])}, "
        f"momentum={fmt(cfg['momentum'])}))"
    )


def _normalized_construct(cls: str) -> Callable[[dict, Callable], str]:
    """nn.LayerNorm, nn.RMSNorm or `_LayerNorm2d` (`cls`) over `normalized_shape`."""

    def construct(cfg: dict, fmt) -> str:
        shape = tuple(cfg["normalized_shape"])
        text = fmt(shape[0]) if len(shape) == 1 else fmt(shape)
        bias = "" if is_default(cfg.get("bias", True), True) else f", bias={fmt(cfg['bias'])}"
        return f"{cls}({text}, eps={fmt(cfg['eps'])}{bias})"

    return construct


def _groupnorm_construct(cfg: dict, fmt) -> str:
    return f"nn.GroupNorm({fmt(cfg['groups'])}, {fmt(cfg['num_channels'])}, eps={fmt(cfg['eps'])})"


def _rnn_construct(kind: str) -> Callable[[dict, Callable], str]:
    def construct(cfg: dict, fmt) -> str:
        layers = None if is_default(cfg["layers"], 1) else fmt(cfg["layers"])
        return (
            f"nn.{kind}({fmt(cfg['input_size'])}, {fmt(cfg['hidden'])}"
            + kwargs(
                ("num_layers", layers),
                ("batch_first", "True"),
                ("bidirectional", "True" if cfg["bidirectional"] else None),
            )
            + ")"
        )

    return construct


def _rnn_call(kind: str) -> Callable[[str, TorchCall], str]:
    def lower(module: str, call: TorchCall) -> str:
        out = _call_x(module, call)
        if not call.attrs.get("state", False):
            return f"{out}[0]"
        return f"_unpack_lstm({out})" if kind == "LSTM" else out

    return lower


def _mha_construct(cfg: dict, fmt) -> str:
    bias = "" if cfg["bias"] else ", bias=False"
    dropout = "" if is_default(cfg["dropout"], 0.0) else f", dropout={fmt(cfg['dropout'])}"
    return (
        f"_MultiheadAttention({fmt(cfg['dim'])}, {fmt(cfg['heads'])}{bias}{dropout}, "
        "batch_first=True)"
    )


def _mha_call(module: str, call: TorchCall) -> str:
    q, k, v = (_tensor(call, n) for n in ("q", "k", "v"))
    mask, causal = call.inputs.get("mask"), call.attrs.get("causal", False)
    return (
        f"{module}({q}, {k}, {v}{'' if mask is None else ', ' + mask}"
        f"{', causal=True' if causal else ''})"
    )


def _free_tensor(cfg: dict, fmt) -> str:
    """The tensor a Parameter or Buffer starts as, drawn as torch.nn.init would."""
    shape, dtype = fmt(tuple(cfg["shape"])), cfg["dtype"]
    typed = "" if dtype is DType.f32 else f", dtype={TORCH_DTYPES[dtype]}"
    init = cfg["init"]
    if init in ("zeros", "ones"):
        return f"torch.{init}({shape}{typed})"
    if init == "constant":
        return f"torch.full({shape}, {fmt(cfg['value'])}{typed})"
    if init == "table":  # a Buffer(expr): the values computed when the model was checked
        return f"torch.tensor({fmt(cfg['table'])}{typed}).reshape({shape})"
    empty = f"torch.empty({shape}{typed})"
    if init == "uniform":
        return f"{empty}.uniform_({fmt(cfg['a'])}, {fmt(cfg['b'])})"
    mean = "" if is_default(cfg["mean"], 0.0) else f"mean={fmt(cfg['mean'])}, "
    if init == "normal":
        return f"{empty}.normal_({mean}std={fmt(cfg['std'])})"
    cut = (
        ""
        if is_default((cfg["a"], cfg["b"]), (-2.0, 2.0))
        else (f", a={fmt(cfg['a'])}, b={fmt(cfg['b'])}")
    )
    return f"nn.init.trunc_normal_({empty}, {mean}std={fmt(cfg['std'])}{cut})"


def _parameter_construct(cfg: dict, fmt) -> str:
    trainable = cfg["trainable"]
    frozen = "" if is_default(trainable, True) else f", requires_grad={fmt(trainable)}"
    return f"nn.Parameter({_free_tensor(cfg, fmt)}{frozen})"


def _free_read(module: str, call: TorchCall) -> str:
    return module  # a Parameter or Buffer read by name: the attribute itself


def _given(scheme) -> bool:
    """Whether an `init=` / `bias_init=` value changes PyTorch's initialisation (a
    hyperparameter may hold any scheme: `_init` decides at run time)."""
    return scheme is not None and (scheme != "default" or isinstance(scheme, Written))


def _with_init(construct: Callable[[dict, Callable], str]) -> Callable[[dict, Callable], str]:
    """A constructor row that honours `init=` and `bias_init=`: `_init(module, scheme,
    bias=..., **arguments)` unless both keep PyTorch's default."""

    def with_init(cfg: dict, fmt) -> str:
        source, scheme, bias = construct(cfg, fmt), cfg.get("init"), cfg.get("bias_init")
        args = []
        if isinstance(scheme, Initializer):
            renamed = {"value": "val"}  # nn.init.constant_'s name
            args = [fmt(scheme.scheme)]
            args += [f"{renamed.get(k, k)}={fmt(v)}" for k, v in scheme.written()]
        elif _given(scheme):
            args = [fmt(scheme)]
        if _given(bias):
            args.append(f"bias={fmt(bias)}")
        return f"_init({source}, {', '.join(args)})" if args else source

    return with_init


for _n in (1, 2, 3):
    ROWS.layer(f"Conv{_n}d", _with_init(_conv_construct(_n)), _conv_call)
    ROWS.layer(f"ConvTranspose{_n}d", _with_init(_conv_transpose_construct), _call_x)
ROWS.layer("Linear", _with_init(_linear_construct), _call_x)
ROWS.layer(
    "Embedding",
    _with_init(lambda cfg, fmt: f"nn.Embedding({fmt(cfg['vocab'])}, {fmt(cfg['dim'])})"),
    lambda module, call: f"{module}({_tensor(call, 'ids')})",
)
ROWS.layer("Dropout", lambda cfg, fmt: f"nn.Dropout({fmt(cfg['p'])})", _call_x)
ROWS.layer(
    "StochasticDepth",
    lambda cfg, fmt: f"_StochasticDepth({fmt(cfg['p'])}, {fmt(cfg['mode'])})",
    _call_x,
)
ROWS.layer("Identity", lambda cfg, fmt: "nn.Identity()", _call_x)
ROWS.layer("BatchNorm", _batchnorm_construct, _call_x)
ROWS.layer("LayerNorm", _normalized_construct("nn.LayerNorm"), _call_x)
ROWS.layer("LayerNorm2d", _normalized_construct("_LayerNorm2d"), _call_x)
ROWS.layer("RMSNorm", _normalized_construct("nn.RMSNorm"), _call_x)
ROWS.layer("GroupNorm", _groupnorm_construct, _call_x)
for _kind in ("LSTM", "GRU"):
    ROWS.layer(_kind, _rnn_construct(_kind), _rnn_call(_kind))
ROWS.layer("MultiHeadAttention", _mha_construct, _mha_call)
ROWS.layer("Parameter", _parameter_construct, _free_read)
ROWS.layer("Buffer", lambda cfg, fmt: f"nn.Buffer({_free_tensor(cfg, fmt)})", _free_read)


# ---------------------------------------------------------------- losses and metrics

# op → torch.nn.functional's function and its attributes' defaults there (left out)
LOSSES = {
    "cross_entropy": (
        "cross_entropy",
        {"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0},
    ),
    "nll": ("nll_loss", {"ignore_index": -100, "reduction": "mean"}),
    "mse": ("mse_loss", {"reduction": "mean"}),
    "l1": ("l1_loss", {"reduction": "mean"}),
    "smooth_l1": ("smooth_l1_loss", {"reduction": "mean", "beta": 1.0}),
    "huber": ("huber_loss", {"reduction": "mean", "delta": 1.0}),
    "binary_cross_entropy_with_logits": (
        "binary_cross_entropy_with_logits",
        {"reduction": "mean"},
    ),
    "kl_div": ("kl_div", {"reduction": "mean", "log_target": False}),
}


def _loss(function: str, defaults: dict) -> Callable[[TorchCall], str]:
    def lower(call: TorchCall) -> str:
        extra = kwargs(
            ("weight", call.inputs.get("weight")),
            *(default_kw(call, a, a, d) for a, d in defaults.items()),
            ("pos_weight", call.inputs.get("pos_weight")),
        )
        return f"F.{function}({_tensor(call, 'input')}, {_tensor(call, 'target')}{extra})"

    return lower


for _op, (_function, _defaults) in LOSSES.items():
    ROWS.function(_op)(_loss(_function, _defaults))


@ROWS.function("accuracy")
def _accuracy(call: TorchCall) -> str:
    hits = f"{_recv(call, 'input')}.argmax(1) == {_tensor(call, 'target')}"
    return f"({hits}).to({TORCH_DTYPES[call.out_types[0].dtype]}).mean()"


@ROWS.function("top_k_accuracy")
def _top_k_accuracy(call: TorchCall) -> str:
    x, target, k = _tensor(call, "input"), _tensor(call, "target"), call.fmt(call.attrs["k"])
    return f"_top_k_accuracy({x}, {target}, {k})"


HELPERS = helper_sources(RUNTIME / "torch_helpers.py")
"""The runtime helpers' source by name (`runtime/torch_helpers.py`, read, never imported)."""


def helpers_needed(source: str) -> list[str]:
    """The runtime helpers `source` uses, with the helpers those use, in HELPERS order."""
    return helpers_used(source, HELPERS)


ROWS.register()  # OpDef.lowerings["torch"]: one row per op
