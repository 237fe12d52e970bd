"""Convolution layers: Conv1d/2d/3d and ConvTranspose1d/2d/3d (PyTorch layouts and names)."""

from __future__ import annotations

import math

from dualnet.ir.types import TensorType
from dualnet.ops.common import (
    WEIGHT_INITS,
    expand,
    fan_in_params,
    positive,
    require_rank,
    resolve_padding,
    same_pads,
)
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, Use, register, sig

_CALL = sig(P("x", "tensor", dtypes="float"))


def _channels(ctx: Ctx, x: TensorType, groups: int, out: int) -> int:
    cin = x.shape[1]
    if not isinstance(cin, int):
        ctx.fail(
            f"the channel dimension must be known, found `{cin}`", "x", "symbolic channel count"
        )
    positive(ctx, (groups,), "groups")
    positive(ctx, (out,), "out")
    if cin % groups or out % groups:
        ctx.fail(
            f"groups={groups} must divide both the {cin} input channels and the {out} "
            "output channels",
            "groups",
            "does not divide",
            code="E-VALUE",
        )
    return cin


def _declare_params(ctx: Ctx, weight_shape: tuple, out: int) -> None:
    """Weight and optional bias with PyTorch's initialisers: fan_in = weight.size(1) *
    prod(kernel) and fan_out = weight.size(0) * prod(kernel), for Conv and ConvTranspose."""
    receptive = math.prod(weight_shape[2:])
    fan_in, fan_out = weight_shape[1] * receptive, weight_shape[0] * receptive
    fan_in_params(ctx, weight_shape, fan_in, fan_out, out)


def _window(ctx: Ctx, n: int) -> tuple:
    """(x, in channels, kernel, stride, dilation) of an n-d (transposed) convolution's call,
    checked: x [B, C, *n spatial], groups dividing the channels, positive per-axis sizes."""
    x, cfg = ctx.inputs["x"], ctx.config
    require_rank(ctx, "x", x, (n + 2,), "[B, C" + ", spatial" * n + "]")
    cin = _channels(ctx, x, cfg["groups"], cfg["out"])
    k, s, d = (expand(ctx, cfg[a], n, a) for a in ("kernel", "stride", "dilation"))
    for name, v in (("kernel", k), ("stride", s), ("dilation", d)):
        positive(ctx, v, name)
    return x, cin, k, s, d


def _conv_rule(n: int):
    def infer(ctx: Ctx) -> list[TensorType]:
        cfg = ctx.config
        out, groups = cfg["out"], cfg["groups"]
        x, cin, k, s, d = _window(ctx, n)
        pads, spatial = resolve_padding(ctx, cfg["padding"], x.shape[2:], k, s, d)
        cfg.update(in_channels=cin, kernel=k, stride=s, dilation=d, pads=pads)
        _declare_params(ctx, (out, cin // groups, *k), out)
        return [TensorType(x.dtype, (x.shape[0], out, *spatial))]

    return infer


def _conv_macs(use: Use):
    """Each output element: in_channels / groups × the kernel's size products."""
    cfg = use.attrs
    return use.outputs[0].numel * (cfg["in_channels"] // cfg["groups"]) * math.prod(cfg["kernel"])


def _convt_macs(use: Use):
    """Each input element: out / groups × the kernel's size products (PyTorch's count)."""
    cfg = use.attrs
    return use.inputs["x"].numel * (cfg["out"] // cfg["groups"]) * math.prod(cfg["kernel"])


def conv_reference(x, w, b, stride, pads, dilation, groups):
    """N-d cross-correlation as ONNX Conv defines it."""
    n = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    ksize = w.shape[2:]
    out_sizes = [
        (x.shape[2 + i] - dilation[i] * (ksize[i] - 1) - 1) // stride[i] + 1 for i in range(n)
    ]
    batch, cin = x.shape[:2]
    cout = w.shape[0]
    cg, og = cin // groups, cout // groups
    out = np.zeros((batch, cout, *out_sizes), dtype=np.result_type(x, w))
    for kidx in np.ndindex(*ksize):
        window = tuple(
            slice(
                kidx[i] * dilation[i],
                kidx[i] * dilation[i] + stride[i] * (out_sizes[i] - 1) + 1,
                stride[i],
            )
            for i in range(n)
        )
        patch = x[(slice(None), slice(None), *window)]
        for g in range(groups):
            wk = w[(slice(g * og, (g + 1) * og), slice(None), *kidx)]
            out[:, g * og : (g + 1) * og] += np.einsum(
                "nc...,oc->no...", patch[:, g * cg : (g + 1) * cg], wk
            )
    if b is not None:
        out += b.reshape(1, -1, *([1] * n))
    return out


def _conv_ref(inputs, attrs, params):
    pads = attrs["pads"]
    if any(p is None for p in pads):  # "same" on a symbolic size: resolve from the data
        pads = tuple(
            same_pads(inputs["x"].shape[2 + i], k, s, d)
            for i, (k, s, d) in enumerate(
                zip(attrs["kernel"], attrs["stride"], attrs["dilation"], strict=True)
            )
        )
    return [
        conv_reference(
            inputs["x"],
            params["weight"],
            params.get("bias"),
            attrs["stride"],
            pads,
            attrs["dilation"],
            attrs["groups"],
        )
    ]


def _conv_construct(extra: tuple[P, ...] = ()):
    return sig(
        P("out", "int"),
        P("kernel", "ints"),
        P("stride", "ints", 1),
        P("padding", "padding", 0),
        *extra,
        P("dilation", "ints", 1),
        P("groups", "int", 1),
        P("bias", "bool", True),
        *WEIGHT_INITS,
    )


for _n in (1, 2, 3):
    register(
        OpDef(
            name=f"Conv{_n}d",
            signature=_CALL,
            construct=_conv_construct(),
            infer=_conv_rule(_n),
            reference=_conv_ref,
            macs=_conv_macs,
            differentiable=("x",),
            axes="channels",
            doc=f"{_n}-d convolution over [B, C, ...]; weight [out, in/groups, *kernel].",
        )
    )


def _convt_rule(n: int):
    def infer(ctx: Ctx) -> list[TensorType]:
        cfg = ctx.config
        out, groups = cfg["out"], cfg["groups"]
        x, cin, k, s, d = _window(ctx, n)
        if cfg["padding"] in ("same", "valid"):
            ctx.fail(
                "takes explicit integer padding (PyTorch's meaning)",
                "padding",
                "use an int or a tuple",
                code="E-VALUE",
            )
        p = expand(ctx, cfg["padding"], n, "padding")
        op = expand(ctx, cfg["output_padding"], n, "output_padding")
        positive(ctx, p + op, "padding", allow_zero=True)
        if any(o >= max(si, di) for o, si, di in zip(op, s, d, strict=True)):
            ctx.fail(
                "output_padding must be smaller than the stride or the dilation",
                "output_padding",
                "too large",
                code="E-VALUE",
            )
        spatial = tuple(
            (m - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
            for m, si, pi, di, ki, oi in zip(x.shape[2:], s, p, d, k, op, strict=True)
        )
        cfg.update(
            in_channels=cin,
            kernel=k,
            stride=s,
            dilation=d,
            pads=tuple((v, v) for v in p),
            output_padding=op,
        )
        _declare_params(ctx, (cin, out // groups, *k), out)
        return [TensorType(x.dtype, (x.shape[0], out, *spatial))]

    return infer


def _convt_ref(inputs, attrs, params):
    """Transposed convolution as the gradient of Conv: scatter each input pixel's kernel."""
    x, w, b = inputs["x"], params["weight"], params.get("bias")
    stride, dilation, groups = attrs["stride"], attrs["dilation"], attrs["groups"]
    batch, cin, *size = x.shape
    og, cg = w.shape[1], cin // groups
    full_size = [
        (m - 1) * s + d * (k - 1) + 1 + o
        for m, s, d, k, o in zip(
            size, stride, dilation, w.shape[2:], attrs["output_padding"], strict=True
        )
    ]
    full = np.zeros((batch, og * groups, *full_size), dtype=np.result_type(x, w))
    for kidx in np.ndindex(*w.shape[2:]):
        window = tuple(
            slice(i * d, i * d + s * (m - 1) + 1, s)
            for i, d, s, m in zip(kidx, dilation, stride, size, strict=True)
        )
        for g in range(groups):
            contrib = np.einsum(
                "nc...,co->no...",
                x[:, g * cg : (g + 1) * cg],
                w[(slice(g * cg, (g + 1) * cg), slice(None), *kidx)],
            )
            full[(slice(None), slice(g * og, (g + 1) * og), *window)] += contrib
    crop = tuple(slice(p, f - p) for (p, _), f in zip(attrs["pads"], full_size, strict=True))
    out = full[(slice(None), slice(None), *crop)]
    if b is not None:
        out = out + b.reshape(1, -1, *([1] * len(size)))
    return [out]


for _n in (1, 2, 3):
    register(
        OpDef(
            name=f"ConvTranspose{_n}d",
            signature=_CALL,
            construct=_conv_construct((P("output_padding", "ints", 0),)),
            infer=_convt_rule(_n),
            reference=_convt_ref,
            macs=_convt_macs,
            differentiable=("x",),
            axes="channels",
            doc=f"{_n}-d transposed convolution; weight [in, out/groups, *kernel]; PyTorch's "
            "padding.",
        )
    )
